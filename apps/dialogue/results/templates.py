"""Question templates per intent, with train and held-out phrasings (like :mod:`apps.dialogue.questions`).

Slots: ``{u}``/``{u2}`` an account, ``{tag}`` a hashtag, ``{k}`` a number, ``{cls}`` a diagnosis class,
``{mod}`` a modality.  An intent is a program skeleton (:data:`INTENTS`); ``followup`` repeats the
previous program with the new slot ("and on the CT?"); ``abstain`` is a question no result answers.
The held-out set shares no template with the train set (tests check this).
"""
from __future__ import annotations

# intent -> (op, fixed args)
INTENTS: dict[str, tuple[str, dict]] = {
    "found": ("lesion.found", {}), "volume": ("lesion.volume", {}), "location": ("lesion.location", {}),
    "image": ("lesion.image", {}), "intensity": ("lesion.intensity", {}), "probabilities": ("probabilities", {}),
    "probability": ("probability", {}), "diagnosis": ("diagnosis", {}), "registration": ("registration.quality", {}),
    "modalities": ("modalities", {}), "ood": ("out_of_domain", {}), "guard": ("guard", {}),
    "icv": ("intracranial_volume", {}), "status": ("status", {}), "withheld": ("withheld", {}),
    "community": ("community", {}), "pagerank": ("user.stat", {"by": "pagerank"}),
    "degree": ("user.stat", {"by": "degree"}), "bot": ("bot", {}), "top_pagerank": ("top", {"by": "pagerank"}),
    "top_degree": ("top", {"by": "degree"}), "bridges": ("bridges", {}), "path": ("path", {}),
    "timeline": ("timeline", {"hashtag": None}), "counts": ("counts", {}), "subgraph": ("subgraph.image", {}),
    "followup": ("followup", {}), "abstain": ("abstain", {}),
}

T = {
    # ------------------------------------------------------------------ medical
    "found": (("is there a lesion ?", "did the model find a lesion ?", "was anything found ?",
               "did you find anything abnormal ?", "is a lesion present ?",
               "how many lesions are there ?", "how many lesions did it find ?"),
              ("does the scan show a lesion ?", "did the analysis detect any lesion ?")),
    "volume": (("how big is the lesion ?", "what is the lesion volume ?", "how large is it ?", "what size is the lesion ?",
                "how many ml is it ?", "what is its volume ?", "how big is it ?", "volume of the lesion ?",
                "how many voxels ?", "how many voxels is the lesion ?"),
               ("what's the volume of the lesion ?", "how much tissue does it take up ?", "how large is the lesion in ml ?")),
    "location": (("where is the lesion ?", "where is it ?", "where is it located ?", "which hemisphere is the lesion in ?",
                  "what is the location of the lesion ?", "where does the lesion sit ?"),
                 ("in which part of the brain is it ?", "whereabouts is the lesion ?", "which side is it on ?")),
    "image": (("show me the lesion", "can i see the lesion ?", "show me a slice through it", "picture of the lesion",
               "show me it", "draw the lesion contour"),
              ("display the lesion", "let me see it", "give me an image of the lesion")),
    "intensity": (("how bright is the lesion ?", "what is the mean intensity in the lesion ?", "what intensity does it have ?",
                   "what are the lesion's values ?", "how bright is it ?",
                   "what hu does the lesion have ?", "how many hounsfield units is it ?"),
                  ("what's the average signal inside the lesion ?", "how dense is the lesion ?")),
    "probabilities": (("what are the class probabilities ?", "how confident is the model ?",
                       "what probabilities did the model give ?", "show the probabilities", "how sure are you ?"),
                      ("give the probability of each class", "what scores did each class get ?")),
    "probability": (("what is the probability of {cls} ?", "how likely is {cls} ?", "is it {cls} ?",
                     "what are the odds of {cls} ?", "probability of {cls} ?"),
                    ("what are the chances it is {cls} ?", "how probable is {cls} ?", "could it be {cls} ?")),
    "diagnosis": (("what is the diagnosis ?", "what type of lesion is it ?", "what did the model conclude ?",
                   "what is the lesion ?", "what's your diagnosis ?"),
                  ("which class did the model predict ?", "what kind of lesion is this ?", "what do you think it is ?")),
    "registration": (("how good was the registration ?", "did the registration work ?", "was the {mod} aligned ?",
                      "how well did registration go ?", "is the registration ok ?"),
                     ("how well were the scans aligned ?", "is the co-registration reliable ?")),
    "modalities": (("which modalities were used ?", "is any modality missing ?", "which scans did the model use ?",
                    "was the {mod} used ?", "what modalities are missing ?"),
                   ("what imaging was available ?", "did the model have both scans ?")),
    "ood": (("is the study out of domain ?", "is this scan unusual for the model ?", "was the study flagged ?",
             "is it out of distribution ?"),
            ("does the study look like the training data ?", "is the scan within the model's domain ?")),
    "guard": (("did the intracranial guard remove anything ?", "how much lesion was removed outside the brain ?",
               "what did the guard do ?"),
              ("was any prediction outside the skull removed ?", "did the brain mask cut anything ?")),
    "icv": (("what is the intracranial volume ?", "what is the icv ?", "what is the brain volume ?",
             "how big is the brain ?", "intracranial volume ?", "how large is the intracranial volume ?"),
            ("what volume does the skull enclose ?", "how much intracranial space is there ?")),
    "status": (("did anything go wrong ?", "any warnings ?", "were there any errors ?", "what is the status of the analysis ?",
                "did the analysis succeed ?", "how long did the analysis take ?", "any problems ?", "were there messages ?"),
               ("did the run report any issues ?", "how did the analysis go ?")),
    "withheld": (("why was it withheld ?", "why was the diagnosis withheld ?", "why is there no diagnosis ?",
                  "why didn't the model give a diagnosis ?", "why no diagnosis ?"),
                 ("what stopped the model from diagnosing ?", "for what reason was the diagnosis held back ?")),
    # ------------------------------------------------------------------ social
    "community": (("which community is {u} in ?", "what community does {u} belong to ?", "{u} is in which community ?",
                   "community of {u} ?", "what is the community of {u} ?"),
                  ("in which cluster is {u} ?", "which group does {u} belong to ?")),
    "pagerank": (("what is the pagerank of {u} ?", "how central is {u} ?", "how influential is {u} ?",
                  "pagerank of {u} ?", "what pagerank does {u} have ?"),
                 ("what's {u}'s pagerank score ?", "how important is {u} in the network ?")),
    "degree": (("what is the degree of {u} ?", "how many connections does {u} have ?", "how many accounts is {u} linked to ?",
                "degree of {u} ?"),
               ("how well connected is {u} ?", "how many neighbours does {u} have ?")),
    "bot": (("is {u} a bot ?", "does the model think {u} is a bot ?", "is {u} automated ?", "bot or not : {u} ?"),
            ("is {u} a human or a bot ?", "was {u} classified as a bot ?")),
    "top_pagerank": (("who are the top {k} accounts by pagerank ?", "which accounts are the most influential ?",
                      "list the {k} most central accounts", "top {k} by pagerank", "who is the most influential account ?"),
                     ("show the {k} highest pagerank users", "who matters most in the network ?")),
    "top_degree": (("who are the top {k} accounts by degree ?", "which accounts have the most connections ?",
                    "list the {k} best connected accounts", "top {k} by degree", "who has the most connections ?"),
                   ("which {k} users have the highest degree ?", "who has the most links ?")),
    "bridges": (("which accounts are bridges ?", "who bridges the communities ?", "list the bridge accounts",
                 "are there bridge accounts ?"),
                ("which users connect different communities ?", "who links the groups together ?")),
    "path": (("what is the shortest path between {u} and {u2} ?", "how are {u} and {u2} connected ?",
              "how far is {u} from {u2} ?", "path from {u} to {u2} ?"),
             ("how many hops from {u} to {u2} ?", "what links {u} and {u2} ?")),
    "timeline": (("how did {tag} evolve over time ?", "show the timeline of {tag}", "when was {tag} used ?",
                  "how many posts used {tag} per day ?", "timeline of {tag}"),
                 ("when did {tag} peak ?", "what is the activity of {tag} over time ?")),
    "counts": (("how many posts are there ?", "how many accounts are in the data ?", "how many communities are there ?",
                "give me the overall numbers", "summary counts please",
                "how many accounts did the analysis find ?", "how many posts did the analysis see ?"),
               ("how big is the data set ?", "what are the totals ?")),
    "subgraph": (("show me the network around {u}", "draw the neighbourhood of {u}", "show {u}'s connections as a graph",
                  "graph around {u}"),
                 ("plot the graph around {u}", "visualise who {u} is connected to")),
    # ------------------------------------------------------------------ both
    "followup": (("and on the {mod} ?", "what about the {mod} ?", "and in the {mod} ?", "now the {mod}",
                  "and {u} ?", "what about {u} ?", "and for {tag} ?", "same for {u}", "and the top {k} ?", "and {tag} ?"),
                 ("how about on the {mod} ?", "same on the {mod} ?", "how about {u} ?", "and what about {tag} ?",
                  "how about the top {k} ?")),
    "abstain": (("what is the patient's age ?", "what treatment do you recommend ?", "who is the radiologist ?",
                 "what will the weather be tomorrow ?", "what is {u}'s real name ?", "where does {u} live ?",
                 "what is the sentiment of the posts ?", "which country are the posts from ?", "when was the scan acquired ?",
                 "will the patient recover ?", "what is the blood pressure ?", "what dose of contrast was used ?",
                 "how old is {u} ?", "tell me a joke", "what's the capital of france ?", "is the lesion malignant ?",
                 "what is the patient's medical history ?", "who wrote the most retweets about cats ?",
                 "what is {u}'s email address ?", "how much did the scan cost ?", "what time is it ?",
                 "which hospital did the scan ?", "translate the posts to german", "what's the lesion diameter ?",
                 "how wide is the lesion ?", "what is the diameter of the lesion ?"),
                ("what is the patient's name ?", "should the patient have surgery ?", "what gender is {u} ?",
                 "what language does {u} speak ?", "how much money does {u} earn ?", "what was the scanner's field strength ?",
                 "what's the stock price of apple ?", "is the patient allergic to anything ?", "what is {u}'s phone number ?",
                 "how tall is the patient ?", "which political party does {u} support ?", "what medication is the patient on ?")),
}

MODALITY_SUFFIX = ((" on the {mod}", " in the {mod} scan", " on {mod}"), (" as seen on the {mod}",))
MODALITY_INTENTS = ("volume", "location", "image", "intensity")
PRONOUNS = (("them", "that account", "this user", "it", "that user", "they", "him", "her", "this account", "the account"),
            ("the same account", "that one"))
PAIR_PRONOUNS = (("them", "those two", "these accounts"), ("both of them",))
PREFIXES = ("", "", "", "ok ", "so ", "and ", "please ", "now ")
MOD_WORDS = {"mr": ("mr", "mri", "t1", "magnetic resonance"), "ct": ("ct", "cat scan", "computed tomography")}
CLASS_WORDS = {"ischemic": ("ischemic", "ischaemic", "ischemia", "stroke"), "haemorrhage": ("haemorrhage", "hemorrhage", "bleed", "bleeding"),
               "fatty": ("fatty", "fat", "lipoma"), "calcified": ("calcified", "calcification")}
DOMAIN = {**{k: "medical" for k in ("found", "volume", "location", "image", "intensity", "probabilities", "probability",
                                    "diagnosis", "registration", "modalities", "ood", "guard", "icv", "status",
                                    "withheld")},
          **{k: "social" for k in ("community", "pagerank", "degree", "bot", "top_pagerank", "top_degree", "bridges",
                                   "path", "timeline", "counts", "subgraph")}}
# followup templates by the slot they change
FOLLOWUP_SLOT = {"mod": "modality", "u": "user", "tag": "hashtag", "k": "k"}


def templates(intent: str, phrasing: str, rng=None) -> tuple[str, ...]:
    """The ``train`` or ``heldout`` templates of ``intent``; ``paraphrase`` (training): the train
    templates plus one random expansion of each training pattern (:mod:`.paraphrase`).

    ``fit`` / ``val``: a validation split *of the training generators* (every 4th train template and
    paraphrase pattern of each intent is ``val``, the rest ``fit``), so that choices (features, data
    mix) are made on phrasings the fitted parser never saw without touching the held-out ones."""
    train, heldout = T[intent]
    if phrasing in ("paraphrase", "fit", "val"):
        from .paraphrase import expand, patterns

        pats = patterns(intent)
        if phrasing != "paraphrase":
            keep = (lambda i: i % 4 == 3) if phrasing == "val" else (lambda i: i % 4 != 3)
            train = tuple(t for i, t in enumerate(train) if keep(i))
            pats = tuple(p for i, p in enumerate(pats) if keep(i))
        avoid = HELDOUT | (FIT_TEMPLATES if phrasing == "val" else frozenset())
        out = []
        for p in pats:
            for _ in range(20):            # an expansion that happens to be a held-out template is drawn again
                text = expand(p, rng)
                if normalise(text) not in avoid:
                    out.append(text)
                    break
        return train + tuple(out)
    return train if phrasing == "train" else heldout


def _split(words: tuple[str, ...], phrasing: str, heldout: tuple[str, ...], val: tuple[str, ...]) -> tuple[str, ...]:
    if phrasing == "heldout":
        return heldout
    if phrasing == "val":
        return val
    return tuple(w for w in words if w not in val) if phrasing == "fit" else words


def pronouns(phrasing: str) -> tuple[str, ...]:
    """Words for the account in focus ("that account"); ``val`` holds two train ones back from ``fit``."""
    return _split(PRONOUNS[0], phrasing, PRONOUNS[1], ("this account", "her"))


def pair_pronouns(phrasing: str) -> tuple[str, ...]:
    return _split(PAIR_PRONOUNS[0], phrasing, PAIR_PRONOUNS[1], ("those two",))


def modality_suffixes(phrasing: str) -> tuple[str, ...]:
    return _split(MODALITY_SUFFIX[0], phrasing, MODALITY_SUFFIX[1], (" on {mod}",))


def normalise(template: str) -> str:
    return " ".join(template.replace("?", " ").split())


HELDOUT = frozenset(normalise(t) for _, heldout in T.values() for t in heldout)
FIT_TEMPLATES = frozenset(normalise(t) for train, _ in T.values() for i, t in enumerate(train) if i % 4 != 3)
