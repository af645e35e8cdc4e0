import pytest
import torch

from mmcore.data import CollateError, MultimodalBatch, MultimodalCollator, collate_multimodal


def sample(image=True, text=True, label=0):
    return {
        "image": torch.full((3, 4), float(label)) if image else None,
        "text": torch.arange(5) + label if text else None,
        "label": label,
    }


def test_mixed_present_and_absent():
    batch = collate_multimodal([sample(label=1), sample(image=False, label=2), sample(text=False, label=3)],
                               ["image", "text"])
    assert batch.batch_size == 3
    assert batch.present["image"].tolist() == [True, False, True]
    assert batch.present["text"].tolist() == [True, True, False]
    assert batch["image"].shape == (3, 3, 4)
    assert torch.equal(batch["image"][2], torch.full((3, 4), 3.0))
    assert torch.equal(batch["text"][1], torch.arange(5) + 2)
    assert batch["text"].dtype == torch.int64
    assert batch.fields["label"].tolist() == [1, 2, 3]
    # placeholders are zeros, never garbage
    assert batch["image"][1].abs().sum() == 0


def test_modality_absent_everywhere():
    batch = collate_multimodal([sample(image=False), sample(image=False)], ["image", "text"])
    assert batch.get("image") is None
    assert batch.present["image"].tolist() == [False, False]
    with pytest.raises(KeyError, match="image"):
        batch["image"]
    shaped = collate_multimodal([sample(image=False)], ["image", "text"], shapes={"image": (3, 4)})
    assert shaped["image"].shape == (1, 3, 4) and not shaped.present["image"].any()


def test_missing_key_counts_as_absent():
    batch = collate_multimodal([{"image": torch.ones(2), "label": 0}, {"label": 1}], ["image", "audio"])
    assert batch.present["image"].tolist() == [True, False]
    assert batch.present["audio"].tolist() == [False, False]


def test_wrong_shape_names_modality_and_sample():
    bad = sample(label=1)
    bad["image"] = torch.zeros(3, 5)
    with pytest.raises(CollateError, match=r"modality 'image' of sample 2 has shape \(3, 5\), expected \(3, 4\)"):
        collate_multimodal([sample(), sample(), bad], ["image", "text"])


def test_declared_shape_is_checked():
    with pytest.raises(CollateError, match="modality 'text' of sample 0.*declared"):
        collate_multimodal([sample()], ["image", "text"], shapes={"text": (6,)})


def test_dtype_mismatch_and_non_mapping():
    s = sample()
    s["text"] = torch.rand(5)
    with pytest.raises(CollateError, match="modality 'text' of sample 1: dtype"):
        collate_multimodal([sample(), s], ["image", "text"])
    with pytest.raises(CollateError, match="sample 0 is a list"):
        collate_multimodal([[1, 2]], ["image"])


def test_missing_field_is_an_error():
    s = sample()
    del s["label"]
    with pytest.raises(CollateError, match="field 'label' is missing in sample 1"):
        collate_multimodal([sample(), s], ["image", "text"])


def test_empty_batch():
    batch = collate_multimodal([], ["image", "text"], shapes={"image": (3, 4)})
    assert batch.batch_size == 0
    assert batch["image"].shape == (0, 3, 4)
    assert batch.present["text"].shape == (0,)


def test_variable_length_padding():
    samples = [{"text": torch.ones(2, 4)}, {"text": None}, {"text": torch.ones(5, 4) * 2}]
    batch = collate_multimodal(samples, ["text"], pad=["text"])
    assert batch["text"].shape == (3, 5, 4)
    assert batch.token_mask["text"].sum(1).tolist() == [2, 0, 5]
    with pytest.raises(CollateError, match="pass pad="):
        collate_multimodal(samples, ["text"])


def test_batch_ops_and_device_moves():
    batch = MultimodalCollator(["image", "text"])([sample(label=i) for i in range(4)])
    dropped = batch.drop_modality("image", rows=torch.tensor([True, False, True, False]))
    assert dropped.present["image"].tolist() == [False, True, False, True]
    assert dropped["image"][0].abs().sum() == 0 and batch["image"][2].abs().sum() > 0  # copy, not in place
    only = batch.only(["text"])
    assert not only.present["image"].any() and only.present["text"].all()
    sub = batch.select(torch.tensor([3, 1]))
    assert sub.fields["label"].tolist() == [3, 1] and sub.batch_size == 2
    moved = batch.to("cpu")
    assert isinstance(moved, MultimodalBatch) and moved.device.type == "cpu"
    if torch.cuda.is_available():
        assert batch.pin_memory()["image"].is_pinned()


def test_dataloader_with_workers_and_pinning():
    from torch.utils.data import DataLoader

    data = [sample(image=i % 2 == 0, label=i) for i in range(6)]
    loader = DataLoader(data, batch_size=3, collate_fn=MultimodalCollator(["image", "text"], shapes={"image": (3, 4)}),
                        num_workers=1, pin_memory=False)
    batches = list(loader)
    assert [b.present["image"].tolist() for b in batches] == [[True, False, True], [False, True, False]]
