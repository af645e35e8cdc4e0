"""From PACS to PACS: pull studies over DICOMweb (or receive them over DIMSE), analyse them with the
warm model, push a DICOM SEG and a TID 1500 Structured Report back.

Modules: ``credentials`` (env / netrc, never logged), ``archive`` (QIDO-RS, WADO-RS streamed to disk,
STOW-RS, clear errors), ``results`` (SEG identity + SR), ``ledger`` (SQLite: exactly-once, shards),
``worker`` (one study end to end), ``watch`` (polling loop), ``listen`` (storage SCP), ``cli``.
"""
