"""The core demo's headline: on a task that needs both modalities, fusion beats each one alone."""
from mmcore.demo import run


def test_core_demo_shows_fusion_ahead_of_every_single_modality(tmp_path):
    report = run(tmp_path, device="cpu", epochs=4)
    best_single = max(report["image_only"], report["text_only"])
    # an ideal single-modality model scores 0.75 on this task; a joint one 1.0
    assert best_single < 0.78
    assert report["fused"] >= best_single + 0.10, report
    assert report["fusion_margin"] == report["fused"] - best_single
    # trained with modalities dropped, the fused model still answers from either one alone
    assert report["fused_given_image_only"] > 0.62 and report["fused_given_text_only"] > 0.62, report
