"""`mm bench missing` end to end at toy size: it writes its tables and PNG grids."""
import json

from PIL import Image

from mmcore.bench.missing import main


def test_bench_writes_tables_and_grids(tmp_path):
    rc = main(["--out", str(tmp_path), "--n-train", "200", "--n-test", "60", "--epochs", "1", "--vae-epochs", "1",
               "--vaes", "mopoe,cvae", "--completion-vaes", "mopoe", "--imputer-steps", "5", "--adapt-steps", "3",
               "--kl-warmup", "5", "--views", "2", "--judge-steps", "20"])
    assert rc == 0
    res = json.loads((tmp_path / "results.json").read_text())
    table = res["missing"]["accuracy"]
    assert set(table) == {"all present", "m0 missing", "m1 missing", "only m0", "only m1"}
    assert {"zero-filling", "modality dropout + learned tokens", "learned imputation", "VAE completion (mopoe)"} <= set(
        table["m0 missing"])
    assert "target accuracy before" in res["domain"] and "target accuracy after dann" in res["domain"]
    assert "coherence" in res["vaes"]["mopoe"] and "conditional_coherence" in res["vaes"]["cvae"]
    for png in ("cross_generation_mopoe.png", "traversal_mopoe.png", "conditional_cvae.png"):
        with Image.open(tmp_path / png) as im:
            assert im.format == "PNG" and im.width > 50
    assert "Best method" in (tmp_path / "results.md").read_text()
