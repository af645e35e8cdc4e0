"""The suite's baseline: the code and shipped model of commit c25a5c5 (before issue 15) on the suite's
columns, with the model's own answers in the history.

    python benchmarks/results/dialogue/suite_baseline_c25a5c5.py 50 OUT.json     (from the repo root)

The old package is unpacked from git into a temporary folder; the suite's pixel shifts
(augment.py, drawing_alt.py) and the new question generator (as questions_new.py, used for the
phrasing_heldout and followups columns only; the other columns use the old generator, so the
image shifts are measured with the phrasings the old model knew) are copied in from this tree.
The old region proposals and the old model read the pixels; the old tokenizer reads the questions
(words it lacks become <unk>).
"""
import json
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time

COLUMNS = ("test", "heldout_combos", "antialiased", "jpeg75", "jpeg50", "up2x_bicubic", "down0.75x", "noise8",
           "alt_renderer", "phrasing_heldout", "followups")


def unpack() -> str:
    root = os.getcwd()
    base = tempfile.mkdtemp(prefix="dialogue-c25a5c5-")
    subprocess.run(f"git archive c25a5c5 apps/dialogue data/dialogue/scenes | tar -x -C {base}", shell=True, check=True)
    for name in ("augment.py", "drawing_alt.py"):
        shutil.copy(os.path.join(root, "apps/dialogue", name), os.path.join(base, "apps/dialogue", name))
    shutil.copy(os.path.join(root, "apps/dialogue/questions.py"), os.path.join(base, "apps/dialogue/questions_new.py"))
    open(os.path.join(base, "apps/__init__.py"), "a").close()
    return base


def main(n: int, out: str) -> None:
    base = unpack()
    sys.path.insert(0, base)
    import torch
    from torch.utils.data import DataLoader
    from transformers import AutoModelForImageTextToText

    from apps.dialogue import data as old_data
    from apps.dialogue import evaluate as old_eval
    from apps.dialogue import model as _registers  # noqa: F401
    from apps.dialogue import tokenizer as old_tok
    from apps.dialogue.augment import SHIFTS
    from apps.dialogue.objects import extract_objects
    from apps.dialogue.questions import make_dialogue as old_make_dialogue
    from apps.dialogue.questions_new import make_dialogue
    from apps.dialogue.scenes import SPLIT_SEEDS, make_scene, render

    torch.set_num_threads(1)
    word = re.compile(r"\w+|[^\w\s]+")
    specials = set(old_tok.SPECIALS)

    def encode(self, text):          # split "it?" as the HF tokenizer does, old vocabulary
        out = []
        for piece in text.split():
            out += [piece] if piece in specials else word.findall(piece.lower())
        return [self.vocab.get(w, self.unk) for w in out]

    old_tok.FastEncoder.__call__ = encode
    model = AutoModelForImageTextToText.from_pretrained(os.path.join(base, "data/dialogue/scenes"),
                                                        dtype=torch.float32).eval()
    spec = {"test": ("test", None, 0.5), "heldout_combos": ("heldout", None, 0.5),
            **{k: ("test", k, 0.5) for k in SHIFTS}, "phrasing_heldout": ("test", None, 0.5),
            "followups": ("test", None, 1.0)}
    res = {}
    for col in COLUMNS:
        split, view, followups = spec[col]
        t0 = time.time()
        samples, images = [], {}
        for i in range(n):
            seed = SPLIT_SEEDS[split] + i
            rng = random.Random(seed * 7919 + 1)
            scene = make_scene(seed, split=split)
            if col == "phrasing_heldout":
                rounds = make_dialogue(scene, rng, 10, "heldout", followups)
            elif col == "followups":
                rounds = make_dialogue(scene, rng, 10, "train", followups)
            else:
                rounds = old_make_dialogue(scene, rng, 10)
            sample = old_data.Sample(scene, rounds)
            images[id(sample)] = render(scene) if view is None else SHIFTS[view](scene, seed)
            samples.append(sample)

        def objects(sample, _images=images):
            o = extract_objects(_images[id(sample)], slots=old_data.SLOTS)
            o["slot_of"], o["slot_attributes"] = old_data.match_slots(sample.scene, o)
            return o

        old_data._objects = objects
        ds = old_data.SceneQADataset(samples, "dialogue")
        flat = [r for s in samples for r in s.rounds]
        ok = tot = fok = ftot = 0
        dist: dict[str, list[int]] = {}
        with torch.no_grad():
            for batch in DataLoader(ds, batch_size=64, collate_fn=old_data.collator()):
                logits = old_eval._own_history_logits(model, batch, False)
                answer = batch.fields["answer"]
                for c in (logits.argmax(-1) == answer[answer != -100]).tolist():
                    r = flat[tot]
                    ok, tot = ok + c, tot + 1
                    key = str(r["distance"]) if r["distance"] < 4 else ">=4"
                    dist.setdefault(key, [0, 0])
                    dist[key][0] += c
                    dist[key][1] += 1
                    if r.get("followup"):
                        fok, ftot = fok + c, ftot + 1
        res[col] = {"accuracy": ok / tot, "n": tot, "distance": {k: a / b for k, (a, b) in dist.items()},
                    "followup": fok / ftot if ftot else None, "n_followup": ftot}
        print(col, json.dumps(res[col]), f"{time.time() - t0:.0f}s", flush=True)
    with open(out, "w") as f:
        json.dump({"commit": "c25a5c5", "n_images": n, "protocol": "own", "columns": res}, f, indent=1)


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 50, sys.argv[2] if len(sys.argv) > 2 else "suite_baseline.json")
