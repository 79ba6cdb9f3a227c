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
# # cliplab run explorer
#
# Pick a scenario, a method and a seed, and move the step from *pretrained* to the last task:
# the run's matrices, the held-out zero-shot and retrieval curves, the stability–plasticity point
# and the embedding projection follow. Each protocol shows its own matrices: accuracy per task,
# TIL and CIL for open domains, accuracy and the anytime curve for an online stream, retrieval
# R@1 (and zero-shot classification) over time, text→image R@1 per language. `cliplab explore` (or `make explore`) serves this page
# with Voilà, without code; in JupyterLab the same page appears once the notebook has run. The
# runs shown are the study's (`runs/study/runs`, made by `make study`) unless
# `cliplab explore FOLDER` names another folder.

# %%
from cliplab.study.explorer import explorer_app

explorer_app()
