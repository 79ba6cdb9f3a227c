# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 06 · Open domains and an online stream
#
# **Questions.**
# 1. *Open-domain continual learning* (CoLeCLIP's protocol): after learning some domains, can one
#    CLIP model still recognise the classes of the domains it has *not* learned (zero-shot), the
#    ones it has, and tell them apart without being told which domain an image comes from?
# 2. *Online continual learning* (SIT's protocol): when the data arrive as one stream, seen once,
#    with new classes appearing at random times and no clean task boundaries, which method is
#    accurate *at any time*, and what does it cost the pretrained zero-shot ability?
#
# **Words used here** (formulas: [docs/metrics.md](../docs/metrics.md#open-domain-continual-learning-coleclip-toolseval_metricpy)
# and [its online section](../docs/metrics.md#online-continual-learning-si-blurry-sit-mvp-clib); both
# protocols, the four methods and every deviation from the authors' code:
# [docs/online_open_domain.md](../docs/online_open_domain.md)):
# * *ODCL* (open-domain continual learning): domains (datasets) are learned one after another, and
#   the model is tested on every domain, learned or not, as an open-world model would be.
# * *TIL / CIL* (task- / class-incremental): TIL classifies a test image among its own domain's
#   classes (the domain is given); CIL among the classes of every domain learned so far together.
# * *Transfer / SeenAvg / Avg / Last*: accuracy on domains not learned yet (zero-shot transfer),
#   on domains already learned, over the whole accuracy matrix, and after the last domain.
# * *Online* learning: the data arrive as one stream of small batches, each seen once.
# * *Si-Blurry* (stochastic incremental blurry, Moon et al. 2023): a stream whose tasks have random
#   numbers of classes and whose boundaries are *blurry*: some classes keep appearing in later tasks.
# * *Anytime accuracy*: accuracy on the classes exposed so far, measured every 100 samples of the
#   stream. *A_auc*: its mean over the stream (the normalised area under the curve); *A_avg* and
#   *A_last*: accuracy on every exposed class at the task ends, averaged and at the end; *F_last*:
#   per-class forgetting, the best accuracy a class had at an earlier task end minus its last.
# * *LoRA* (low-rank adaptation): trainable low-rank updates B·A added to frozen weight matrices;
#   an *adapter*: a small trainable bottleneck network added inside each transformer block. Both
#   are *PET* (parameter-efficient tuning) modules: `sit+pet=adapter` is SIT with adapters.
# * *Held-out zero-shot*: accuracy on ToyWorld images never trained on; its change measures what
#   the model kept of pretraining.
#
# **The methods.**
# * `zeroshot`: the pretrained model, never trained.
# * `continual_clip` (Thengane et al. 2022): the same frozen model, asked only about the classes
#   seen so far: the training-free row every CLIP continual-learning table carries.
# * `finetune`: the whole model trained with cross-entropy (online: over the classes exposed so far).
# * `coleclip` (Li et al. 2024): the model stays frozen; each domain adds *one prompt token* to
#   the image encoder, and a *class vocabulary* keeps one text embedding per class name, updated
#   slowly (momentum) while a small text-side LoRA learns the domain and is then thrown away. At
#   test time, a class that was learned is scored with the prompt of the domain that taught it; a
#   class never learned is scored by the untouched model, so unseen domains stay zero-shot.
# * `er` (ER, experience replay): full fine-tuning plus a small memory filled by reservoir sampling
#   (every sample of the stream has the same chance to be kept) and replayed with each batch.
# * `sit` (Wang et al. 2024): the model stays frozen; LoRA (or, `sit+pet=adapter`, small
#   adapters) is trained in both towers with the *symmetric image-text loss*: each image is
#   contrasted only with the class names of its own batch, so names of earlier classes are never
#   pushed away by images they have nothing to do with.
#
# **Protocols.**
# * `toy-odcl-cil`: toy-mtil's four domains (digits, novel shapes, background textures, shapes
#   under made-up names) learned in order. After each domain *every* domain is tested: a domain
#   already learned among the classes of *all* learned domains together (class-incremental, no
#   domain given), a domain not yet learned among its own classes. Metrics (CoLeCLIP's): Transfer
#   = accuracy on domains before they are learned (unseen), SeenAvg = accuracy on learned domains
#   (seen), Last; the task-incremental (TIL) variant classifies every domain among its own classes.
# * `toy-si-blurry`: the digits and the six novel shapes (16 classes) as one Si-Blurry stream:
#   4 tasks with random class counts, half the classes blurred across task boundaries, batches of
#   16, each batch trained on 3 times, seen once. Every 100 samples the model is tested on the
#   classes exposed so far (*anytime accuracy*); A_auc is the mean of that curve, A_last its value
#   at the end, F_last the per-class forgetting.
# * Held-out zero-shot: ToyWorld's shape+colour probe (combinations pretraining never showed);
#   0 change = the pretrained ability kept.
#
# **How to read the figures.**
# 1. *Open-domain table*: per method, unseen-domain (Transfer) and seen-domain (SeenAvg) accuracy,
#    TIL and CIL. Higher is better; zero-shot models keep Transfer and lose nothing held out.
# 2. *Anytime accuracy*: x = stream samples seen, y = accuracy on the classes exposed so far;
#    dotted lines = where the sampler's tasks start. A high curve is a model useful at any time.
# 3. *Stability–plasticity*: up = held-out zero-shot kept, right = what the protocol calls learning
#    (mean of the matrix diagonal; A_auc on the stream). Dotted = the pretrained model.

# %% tags=["parameters"]
# Workshop: change METHODS (a list per scenario), SEEDS, STEPS_PER_TASK or OVERRIDES; SMOKE = True for a first look.
# A changed STEPS_PER_TASK or OVERRIDES needs its own RUNS_DIR (e.g. "../runs/ex6"), so that the study's runs stay as
# they are. The other settings are for other models, data and machines.
MODEL = "toyclip"  # "toyclip", an open_clip architecture ("ViT-B-16") or a checkpoint path
PRETRAINED = None  # None: shipped ToyCLIP weights; "random": no pretraining; "openai" for ViT-B-16
SCENARIOS = ["toy-odcl-cil", "toy-si-blurry"]  # an open-domain scenario, then an online one
METHODS = {
    "toy-odcl-cil": ["zeroshot", "continual_clip", "finetune", "coleclip"],
    "toy-si-blurry": ["continual_clip", "finetune", "er", "sit", "sit+pet=adapter"],
}
SEEDS = [0, 1, 2]
STEPS_PER_TASK = None  # None: each scenario's default (the online stream sets its own steps)
OVERRIDES = {}  # other training settings (TrainConfig fields) for every run
ONLINE_SMOKE = {"online_iter": 1, "batch_size": 32, "eval_period": 200}  # SMOKE only: a short stream
DEVICE = None  # None: CUDA when available, else CPU
JOBS = None  # runs trained at once; None: one per CPU core (at most 4) on CPU, one on a GPU
DATA_ROOT = None  # folder of local datasets, for real scenarios (odcl-order1, cifar100-si-blurry)
SCENARIO_OPTIONS = {}  # real scenarios only
OUT_DIR = None  # None: ../runs/study/06_open_domain_and_online (../runs/study-smoke/... under SMOKE)
RUNS_DIR = "../runs/study/runs"  # shared with the other notebooks: matching runs are reused
FIGURES_DIR = None  # None: ../runs/study/figures (SMOKE: ../runs/study-smoke/figures); relative to notebooks/
SMOKE = False  # True: 1 seed, 2 tasks, a few steps
INTERACTIVE = True

# %%
from cliplab import study
from cliplab.io import write_json_atomic
from cliplab.plots import protocols as pplots
from cliplab.plots.style import save_figure

# The parameters above (SMOKE: first seed only, runs and results apart, a banner):
OUT_DIR, FIGURES_DIR, seeds, runs_dir, settings, run_options = study.setup("06_open_domain_and_online", globals())
saved = []  # every figure written, recorded in metrics.json
online_settings = {**settings, **(ONLINE_SMOKE if SMOKE else {})}
odcl_scenario, online_scenario = SCENARIOS
settings

# %% [markdown]
# ## Train (or reuse) every run
# Both scenarios train in one pool, the longest runs first. The cell first says how many runs it
# will train and roughly how long; *Kernel → Interrupt* stops it within seconds, and running the
# cell again reuses the finished runs and resumes the rest.

# %%
odcl_requests = study.requests_for({odcl_scenario: METHODS[odcl_scenario]}, seeds)
online_requests = study.requests_for({online_scenario: METHODS[online_scenario]}, seeds)
study.run_batches([(odcl_requests, settings), (online_requests, online_settings)], runs_dir, **run_options)
odcl = study.load_results(odcl_requests, runs_dir)
online = study.load_results(online_requests, runs_dir)

# %% [markdown]
# ## Open domains: seen and unseen (mean ± std over seeds)
# *Unseen* = a domain before it is learned (Transfer), *seen* = once it has been learned
# (SeenAvg); CIL asks among every learned domain's classes at once.

# %%
odcl_table = study.odcl_table(odcl)
odcl_table

# %% [markdown]
# The accuracy matrix of each method in the class-incremental setting (first seed): row = after
# learning that domain, column = the domain tested; above the diagonal the domain is still unseen.

# %%
import pandas as pd

first = {r.label: res for r, res in odcl.items() if r.seed == seeds[0]}
tasks = next(iter(first.values())).tasks
pd.concat(
    {
        label: pd.DataFrame(res.extra["odcl"]["cil"]["accuracy_matrix"], index=tasks, columns=tasks)
        for label, res in first.items()
    }
).round(1)

# %% [markdown]
# ## The online stream: anytime accuracy

# %%
curves = study.anytime_frame(online)
boundaries = study.task_boundaries(next(iter(online.values())))
fig = pplots.plot_anytime_curves(curves, boundaries, title=f"{online_scenario}: accuracy on the classes seen so far")
saved.append(save_figure(fig, f"{FIGURES_DIR}/06_anytime_accuracy"))

# %%
online_table = study.online_table(online)
online_table

# %% [markdown]
# ## Stability vs plasticity, both protocols

# %%
points = study.stability_points({**odcl, **online})
fig = pplots.plot_stability_panels(points)
saved.append(save_figure(fig, f"{FIGURES_DIR}/06_stability_plasticity"))

# %% [markdown]
# ## Record the headline numbers
# `OUT_DIR/metrics.json`: per method, the open-domain metrics (TIL and CIL) and the online
# summaries, means over seeds with the held-out zero-shot change.

# %%
study.smoke_banner(SMOKE, OUT_DIR)
headline = {
    "settings": {"model": MODEL, "pretrained": PRETRAINED, "scenarios": SCENARIOS, "seeds": seeds, "smoke": SMOKE},
    "open_domain": study.odcl_means(odcl),
    "online": study.online_means(online),
    "seconds": {
        str(r.label): res.extra.get("seconds", {}).get("train")
        for r, res in {**odcl, **online}.items()
        if r.seed == seeds[0]
    },
    "figures": [str(path) for path in saved],
}
write_json_atomic(f"{OUT_DIR}/metrics.json", study.jsonable(headline))
pd.DataFrame(headline["online"]).T.round(1)

# %% [markdown]
# ## The answer, in the default setting
# At seed 0 (README.md): on `toy-odcl-cil` CoLeCLIP keeps held-out zero-shot intact with a SeenAvg of
# 45.7, where fine-tuning forgets its domains (BWT −72) and 64 points of zero-shot; Continual-CLIP
# equals the zero-shot model number for number. On the online `toy-si-blurry` stream, scored as SIT's
# code scores it (each class with the prompt it trains with), SIT's anytime accuracy is level with
# online fine-tuning's: above it at seed 0 (A_auc 38.0 vs 35.9), below at seeds 1 and 2 (36.3 ± 6.1
# vs 37.6 ± 4.6 over three seeds). It loses 57 points of shape+colour zero-shot against 68 at seed 0
# (42 ± 17 vs 74 ± 9 over seeds: more than the half issue 16 asks for) and keeps retrieval far
# better (−18 vs −85). Over five seeds (README.md) both land on issue 16's line: A_auc 35.8 vs
# 35.5, and 51 % of fine-tuning's zero-shot loss. Experience replay gives the best anytime accuracy (65.0) and forgets
# zero-shot like fine-tuning.
