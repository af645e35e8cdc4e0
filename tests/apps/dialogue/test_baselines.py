"""The Sort-of-CLEVR baselines read the question, never the teacher-forced answer after it."""
import torch

from apps.dialogue import data as D
from apps.dialogue.baselines import question_bow
from apps.dialogue.tokenizer import vocabulary


def test_question_features_exclude_the_answer():
    ds = D.build("sort_of_clevr", "train", 2, with_raw=True)
    batch = D.collator()([ds[0], ds[1]])
    text = batch["text"]
    amask = batch.fields["answer_mask"]
    rows = amask.nonzero(as_tuple=True)
    swapped = text.clone()
    yes, no = vocabulary().index("yes"), vocabulary().index("no")
    answer = swapped[rows[0], rows[1], rows[2] + 1]
    swapped[rows[0], rows[1], rows[2] + 1] = torch.where(answer == yes, no, yes)
    assert torch.equal(question_bow(text), question_bow(swapped))
    assert question_bow(text)[0, vocabulary().index("object")] >= 1       # the question is there
