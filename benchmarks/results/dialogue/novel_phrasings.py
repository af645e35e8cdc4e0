"""Four counting questions phrased like neither the training templates nor the held-out set, asked
through the bot (rendered pixels, greedy answers) on 20 test scenes each: a phrasing shift lane
outside both sets.  Prints the misses and `correct total`.

    python benchmarks/results/dialogue/novel_phrasings.py data/dialogue/scenes
"""
import sys

import torch

from apps.dialogue.scenes import make_scene, render
from apps.dialogue.session import Session, load_backend

QUESTIONS = ("How many objects can you count?", "what's the number of circles",
             "how many squares are visible in the photo ?", "Count all the circles you see")


def main(model: str) -> None:
    torch.set_num_threads(1)
    backend = load_backend(model)
    ok = total = 0
    for seed in range(20_000_500, 20_000_520):
        scene = make_scene(seed, split="test")
        shapes = [o["shape"] for o in scene["objects"]]
        truth = (len(shapes), shapes.count("circle"), shapes.count("square"), shapes.count("circle"))
        for question, answer in zip(QUESTIONS, map(str, truth)):
            got = Session(backend, render(scene)).ask(question).strip()
            ok, total = ok + (got == answer), total + 1
            if got != answer:
                print(repr(question), answer, got)
    print(ok, total)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "data/dialogue/scenes")
