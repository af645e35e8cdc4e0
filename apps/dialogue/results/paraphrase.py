"""Training-only paraphrase grammar: patterns with ``(a|b)`` alternatives and ``[optional]`` parts,
expanded at random.  Used with the train templates (:mod:`.templates`) to train the parser; the
held-out templates are never expanded from here (a test checks that no held-out template is a
possible expansion of the training patterns of its intent).
"""
from __future__ import annotations

import random
import re

LES = "(the lesion|it|the abnormality|the finding|that lesion|this lesion|the mass)"
U = "{u}"
G = {
    "found": ("(is|was) there (a|any) (lesion|abnormality|finding) [in the (scan|study|brain)]",
              "did (the model|you) (find|detect|see|spot) (a|any) (lesion|abnormality|thing)",
              "(any|a) lesion [found|detected] ?", "is (the study|the scan|the brain) (normal|clean|clear)",
              "(was|is) (a|the) lesion (found|detected|present|visible)", "did anything show up"),
    "volume": ("(how|just how) (big|large|huge|small|extensive) is " + LES,
               "what is the (volume|size|extent|total volume) of " + LES, "(lesion|its) (volume|size) [in ml]",
               "how many (ml|millilitres|milliliters|cc|cubic centimetres|voxels) (is|does) " + LES + " [measure]",
               "(measure|quantify|report) the (lesion|lesion's) (volume|size)",
               "how much (space|volume|brain|room) does " + LES + " (occupy|cover|fill|use)",
               "what does " + LES + " measure", "size of " + LES),
    "location": ("where (is|does) " + LES + " [located|sit|lie|found]", "(which|what) (hemisphere|side|region|part|area) is "
                 + LES + " in", "what is the (location|position|place|site) of " + LES,
               "(locate|localise|localize) " + LES, "where in the brain is " + LES, "(left|right) or (right|left) ?",
               "(location|position) of " + LES, "what are the coordinates of " + LES),
    "image": ("show (me|us) " + LES, "(can|could) (i|we) see " + LES, "show (me|us) (a|the) (slice|picture|image|view|cut) "
              "(through|of) " + LES, "(picture|image|slice|view) of " + LES, "(draw|plot|render|visualise|visualize) "
              + LES + " [contour|outline]", "i want to see " + LES, "(an|the) image please"),
    "intensity": ("how (bright|dark|intense|dense|hyperintense) is " + LES, "what is the (mean|average|typical) "
                  "(intensity|brightness|value|signal|density|hu) (in|inside|of|within) " + LES,
                  "what (intensity|signal|density|brightness) does " + LES + " have", "(intensity|brightness|density) of " + LES,
                  "how many (hu|hounsfield units) (is|in) " + LES, "what (values|numbers|voxel values) (are|does) " + LES + " [have]"),
    "probabilities": ("what are the (class|diagnosis|model) (probabilities|scores|confidences)", "how (confident|sure|certain) "
                      "(is the model|are you|was the model)", "(show|give|list) (me|us) the (probabilities|scores|class scores)",
                      "what (probabilities|scores|confidence) did (the model|you) (give|assign|output)",
                      "(probabilities|scores|confidence) per class", "how certain is (the|this) (result|prediction)"),
    "probability": ("what is the (probability|chance|likelihood) (of|that it is) {cls}", "how (likely|probable) is {cls}",
                    "is (it|this|the lesion) (a|an) {cls} [lesion]", "is (it|this|the lesion) {cls}",
                    "(probability|chance|odds) of {cls}", "what are the odds (of|that it is) {cls}",
                    "how likely is it to be {cls}", "{cls} probability"),
    "diagnosis": ("what is the (diagnosis|verdict|conclusion|prediction|result)", "what (type|kind|sort|class) of lesion is "
                  "(it|this|that)", "what did (the model|you|the analysis) (conclude|decide|predict|diagnose)",
                  "what is (it|the lesion|this) (exactly|then)", "(diagnosis|verdict|predicted class) [please]",
                  "what do you (call|make of) (it|this)", "(which|what) class (is it|was predicted)"),
    "registration": ("how good (was|is) the (registration|alignment|co-registration)", "did the (registration|alignment) "
                     "(work|succeed|pass|fail)", "(was|were) the (ct|scans|images|modalities) (aligned|registered) [properly|well]",
                     "(registration|alignment) (quality|result|status)", "how well (did|was) the (registration|alignment)",
                     "how much (motion|movement|misalignment) was (corrected|there)"),
    "modalities": ("(which|what) (modalities|scans|sequences|images|inputs) were (used|available|present|missing)",
                   "(is|was) (any|a) (modality|scan) missing", "which (scans|modalities) did (the model|you) (use|have|get)",
                   "(used|missing) modalities", "did (the model|it) (use|have) (both|all) (scans|modalities)",
                   "was (it|this) a single modality (result|study)"),
    "ood": ("is (the study|this scan|it) (out of domain|out of distribution|unusual|atypical|an outlier)",
            "(was|is) (the study|this scan|it) flagged [as out of domain]", "(out of domain|ood|distribution) (check|status|score)",
            "is (the study|this scan) (in domain|typical|like the training data)", "how unusual is (the study|this scan)"),
    "guard": ("did the (intracranial|brain) (guard|mask) (remove|cut|delete) anything", "how much (lesion|prediction) was "
              "removed (outside|beyond) the (brain|skull)", "what did the (guard|intracranial guard) (do|remove)",
              "(guard|intracranial guard) (result|status)", "was anything (outside|beyond) the (brain|skull) (removed|cut)"),
    "icv": ("what is the (intracranial|brain|total brain) (volume|size)", "(how big|how large) is the (brain|intracranial "
            "volume|intracranial space)", "(icv|intracranial volume|brain volume) [in ml|please]",
            "what (icv|intracranial volume) did (the guard|the analysis|you) (measure|find|report)",
            "how many (ml|millilitres) is the (brain|intracranial volume)", "what is the volume (inside|of) the skull"),
    "status": ("did (anything|something) go wrong", "(any|were there any|did you get any) (warnings|errors|problems|issues|"
               "messages)", "what is the (status|outcome) of the (analysis|run)", "did the (analysis|run|pipeline) "
               "(succeed|fail|finish|complete)", "how long did (the analysis|the run|it) take", "(status|warnings|messages) "
               "[of the analysis|please]", "(was|is) (the analysis|the run|everything) (ok|fine|successful)",
               "how many seconds did (the analysis|it) take"),
    "withheld": ("why (was|is) (it|the diagnosis|the result|the prediction) withheld", "why (is there|was there) no "
                 "(diagnosis|prediction|class)", "why (didn't|did not|won't) (the model|you) (give|make|commit to) a "
                 "(diagnosis|prediction)", "(what|which) (reason|cause) (for|behind) the withheld (diagnosis|result)",
                 "why no (diagnosis|prediction)", "why (was|were) the (diagnosis|probabilities) (held back|not given)"),
    "community": ("(which|what) (community|cluster|group) (is|does) " + U + " (in|belong to|sit in)",
                  "(community|cluster) of " + U, "what (community|cluster) (is|was) " + U + " (assigned|put) (to|in)",
                  "where does " + U + " belong", U + " belongs to which (community|cluster|group)",
                  "(tell me|give me) " + U + "'s (community|cluster)"),
    "pagerank": ("what is (the pagerank|the centrality|the influence) of " + U, "how (central|influential|important|"
                 "prominent) is " + U, "(pagerank|centrality|influence) (of|for) " + U, "what (pagerank|score) does "
                 + U + " have", "(tell me|give me) " + U + "'s (pagerank|centrality)", "how much influence does " + U + " have"),
    "degree": ("what is the degree of " + U, "how many (connections|links|edges|neighbors|ties) does " + U + " have",
               "how many accounts (is|does) " + U + " (linked|connected|interact) (to|with)", "(degree|connection count) "
               "(of|for) " + U, "how (connected|linked) is " + U, "(tell me|give me) " + U + "'s degree"),
    "bot": ("is " + U + " a bot", "(does|did) the model (think|say|predict) " + U + " is (a bot|automated|fake)",
            "is " + U + " (automated|fake|a robot|a real person|human)", "bot (score|prediction) (of|for) " + U,
            "(was|is) " + U + " (flagged|predicted|labelled) as a bot", "(human|bot) or (bot|human) : " + U),
    "top_pagerank": ("who are the (top|leading) {k} accounts by (pagerank|influence|centrality)", "(which|what) accounts are "
                     "the most (influential|central|important)", "(list|name|show|give me) the {k} most (influential|central|"
                     "important) accounts", "top {k} [accounts] by (pagerank|influence)", "(highest|top) pagerank accounts",
                     "who are the (key|main|biggest) (influencers|players|accounts)", "who (leads|dominates) the network"),
    "top_degree": ("who are the (top|leading) {k} accounts by (degree|connections)", "(which|what) accounts have the most "
                   "(connections|links|neighbors|edges)", "(list|name|show|give me) the {k} (best|most) connected accounts",
                   "top {k} [accounts] by (degree|connections)", "(highest|top) degree accounts",
                   "who has the (most|largest number of) (connections|links|edges)", "most connected accounts"),
    "bridges": ("(which|what) accounts are (bridges|bridge accounts|brokers)", "who (bridges|connects|spans) the (communities|"
                "clusters|groups)", "(list|show|name) the (bridge|broker) accounts", "are there (any) (bridges|bridge accounts)",
                "(bridge|broker) accounts [please]", "who sits between (communities|clusters|groups)"),
    "path": ("what is the (shortest|quickest) (path|route|chain) (between|from) {u} (and|to) {u2}",
             "how (are|is) {u} (and|connected to) {u2} [connected|linked|related]", "how (far|distant) is {u} from {u2}",
             "(path|route|chain) (from|between) {u} (to|and) {u2}", "(are|is) {u} and {u2} (connected|linked)",
             "how many steps (between|from) {u} (and|to) {u2}", "connect {u} (and|to) {u2}"),
    "timeline": ("how did {tag} (evolve|change|develop|trend) [over time]", "(show|give|plot) (me) the (timeline|time series|"
                 "history|activity) (of|for) {tag}", "when was {tag} (used|popular|posted|active)",
                 "how many posts (used|mentioned|had) {tag} (per|each|every) day", "(timeline|trend|activity|history) of {tag}",
                 "(daily|per day) (counts|posts) (of|for) {tag}", "{tag} over time"),
    "counts": ("how many (posts|accounts|users|communities|clusters) are (there|in the data|in the report)",
               "(give|show|tell) me the (overall|total|summary) (numbers|counts|figures|statistics)",
               "(summary|overall) (counts|numbers|statistics) [please]", "how many (posts|users) did (you|the analysis) "
               "(analyse|analyze|see)", "what is the size of the (network|data|report)", "(totals|counts) please"),
    "subgraph": ("show (me|us) the (network|graph|neighbourhood|neighborhood|connections) (around|of) " + U,
                 "(draw|plot|render|visualise|visualize) the (network|graph|neighbourhood|neighborhood|ego network) "
                 "(of|around) " + U, "show " + U + "'s (connections|network|neighbours|neighbors) [as a graph]",
                 "(graph|network|picture) (around|of) " + U, "who is " + U + " connected to"),
    "followup": ("(and|what about|how about|now) (on|in|for) the {mod} [scan|image]", "(and|what about|same) (on|in) {mod}",
                 "(and|what about|what of|now) {u}", "(same|same thing|same question) for {u}", "(and|what about) "
                 "(for) {tag}", "(and|now|what about) the top {k}", "(and|what about) {k} (of them|accounts)",
                 "(and|same) for {tag}", "(and|also) {u}", "{mod} (too|as well|please)", "(and|now) {tag}"),
    "abstain": ("what is the patient's (age|name|sex|weight|height|address|history|prognosis|insurance)",
                "(what|which) (treatment|medication|surgery|therapy|drug) (do you recommend|should they get|is needed)",
                "(who|which doctor|which radiologist) (read|reported|ordered) the scan", "when was (the scan|it|the study) "
                "(acquired|taken|done|performed)", "will the patient (recover|survive|get better|need surgery)",
                "what is " + U + "'s (real name|age|address|email|phone number|salary|religion|job)",
                "where does " + U + " (live|work|come from)", "how old is " + U, "what does " + U + " (look like|believe)",
                "what is the (weather|time|date|news) [today|tomorrow]", "(tell|write) me a (joke|poem|story)",
                "what is the capital of (france|spain|peru)", "(translate|summarise) the posts (to|into) (german|french)",
                "what is the sentiment of the posts", "which (country|city) are the posts from",
                "is the lesion (malignant|benign|cancer|a tumour|contagious)", "what (caused|causes) the lesion",
                "how much (did|does) the scan cost", "(which|what) hospital (is this|did the scan)",
                "what is the (blood pressure|heart rate|temperature|blood sugar)", "who will win the (match|game|cup)",
                "(what|how) is the stock (price|market)", "what (dose|amount) of contrast was used",
                "(what is|what's) the (diameter|radius|width|length|thickness) of the lesion",
                "how (wide|long|thick) is the lesion",
                "(can|should) (i|we) (ban|block|report) " + U, "what is the meaning of life", "(hello|hi) how are you"),
}
_ALT = re.compile(r"\(([^()]*)\)")
_OPT = re.compile(r"\[([^\[\]]*)\]")


def expand(pattern: str, rng: random.Random) -> str:
    text = _OPT.sub(lambda m: m.group(1) if rng.random() < 0.5 else "", pattern)
    while "(" in text:
        text = _ALT.sub(lambda m: rng.choice(m.group(1).split("|")), text)
    text = " ".join(text.split())
    return text if text.endswith("?") or rng.random() < 0.3 else text + " ?"


def patterns(intent: str) -> tuple[str, ...]:
    return G.get(intent, ())
