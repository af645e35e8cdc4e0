"""A short CPU training run learns from the image: it beats the blind (question-only) baseline."""
import torch

from apps.dialogue import data as D
from apps.dialogue.evaluate import evaluate
from apps.dialogue.train import build_model, vlm_step

TINY = {"text_config": {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4,
                        "num_key_value_heads": 4}, "vision_hidden": 32}


def _fit(train, blind: bool, steps: int = 120) -> torch.nn.Module:
    torch.manual_seed(0)
    model = build_model("vlm", TINY)
    step = vlm_step(blind=blind)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    collate = D.collator()
    g = torch.Generator().manual_seed(0)
    for _ in range(steps):
        idx = torch.randint(len(train), (16,), generator=g).tolist()
        loss = step(model, collate([train[i] for i in idx])).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model


def test_short_training_beats_the_blind_baseline():
    torch.set_num_threads(1)  # bit-reproducible: the margins below were measured so
    train = D.build("dialogue", "train", 200, history=False)
    val = D.build("dialogue", "val", 40, history=False)
    seeing = evaluate(_fit(train, blind=False), val)
    blind = evaluate(_fit(train, blind=True), val, blind=True)
    count_all = "count"  # "how many objects are there ?" lives in the count family
    # measured: 0.41 vs 0.378 overall; 0.48 vs 0.34 on counting (blind can only guess the prior)
    assert seeing["accuracy"] > blind["accuracy"], (seeing["accuracy"], blind["accuracy"])
    assert seeing["family"][count_all] > blind["family"][count_all] + 0.05, (seeing["family"], blind["family"])
