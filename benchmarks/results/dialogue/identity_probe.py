# usage: python identity_probe.py IDENTITY(0/1) STEPS LR BATCH_IMAGES COLOUR_GAIN  (e.g. 1 500 1e-3 4 5)
import sys, time, torch
from pathlib import Path; sys.path.insert(0, str(Path(__file__).resolve().parents[3]))
torch.set_num_threads(1)
from apps.dialogue import data as D
from apps.dialogue.evaluate import evaluate
from apps.dialogue.train import build_model, vlm_step
ident = sys.argv[1] == "1"; steps = int(sys.argv[2]); lr = float(sys.argv[3])
t0 = time.time()
train = D.build("sort_of_clevr", "train", 1000); val = D.build("sort_of_clevr", "val", 30)
print("data", time.time() - t0, flush=True)
torch.manual_seed(0)
cfg = {"text_config": {"hidden_size": 64, "intermediate_size": 192, "num_hidden_layers": 2, "num_attention_heads": 4,
       "num_key_value_heads": 4}, "vision_hidden": 64, "object_identity": ident, "colour_gain": float(sys.argv[5])}
model = build_model("vlm", cfg); step = vlm_step()
opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01); coll = D.collator()
g = torch.Generator().manual_seed(0)
for s in range(1, steps + 1):
    model.train()
    idx = torch.randint(len(train), (int(sys.argv[4]),), generator=g).tolist()
    loss = step(model, coll([train[i] for i in idx])).loss
    opt.zero_grad(); loss.backward(); torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0); opt.step()
    if s % 250 == 0:
        model.eval()
        r = evaluate(model, val)
        print(s, round(time.time() - t0), round(loss.item(), 3), r["accuracy"], r.get("kind"), flush=True)
