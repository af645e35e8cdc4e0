"""Talk with your results: conversations grounded in a medical study's findings or a social report.

Questions are parsed into small programs (:mod:`.program`) by a trained parser (:mod:`.parser`)
and executed over the result folder's files (:mod:`.context`, :mod:`.medical`, :mod:`.social`);
answers quote the data's numbers with units, and pictures where they help.
"""
