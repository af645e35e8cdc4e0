"""The validation figures for choices about the result-conversation parser (docs/dialogue.md).

    OMP_NUM_THREADS=1 python benchmarks/results/dialogue/validate_results_parser.py

Refits the n-gram and n-gram + MiniLM parsers on the ``fit`` phrasings of the training generators
(1,000 dialogues, as `mm dialogue results-train`) and scores the shipped cascade on 600 dialogues of
the ``val`` phrasings over synthetic inventories (``evaluate.validate``): no held-out phrasing or
result is read.
"""
import collections

import torch

from apps.dialogue.results.evaluate import validate
from apps.dialogue.results.generate import training_pairs
from apps.dialogue.results.parser import IntentModel, Parser
from apps.dialogue.results.session import FAST_CONFIDENCE, THRESHOLD, SentenceEncoder

if __name__ == "__main__":
    torch.set_num_threads(1)
    texts, intents = training_pairs(1000, 0, phrasing="fit")
    ngram = IntentModel.train(texts, intents)
    minilm = IntentModel.train(texts, intents, encoder=SentenceEncoder())
    for name, parser in (("ngram", Parser(ngram, THRESHOLD)), ("cascade", Parser(minilm, THRESHOLD, ngram, FAST_CONFIDENCE))):
        rep = validate(parser, 600)
        dist = ", ".join(f"{k}: {v['accuracy']:.3f} (n={v['n']})" for k, v in rep["by_distance"].items())
        print(f"{name}: program {rep['program_accuracy']:.3f}  abstention P {rep['abstention']['precision']:.3f} "
              f"R {rep['abstention']['recall']:.3f}  by coref distance: {dist}")
        print("   most common misses (gold intent, parsed intent):",
              collections.Counter((e["gold_intent"], str(e["intent"])) for e in rep["errors"]).most_common(6))
