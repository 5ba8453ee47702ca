"""The lab: studies, record-only variants, ranking variants, the records tooling, the results
tables and the experiment-only training terms (research/README.md).

Not installed (setup.py packages zoo and export only) and never imported by them: run it from a
checkout (``python -m research.train``, ``python -m research.study``,
``python -m research.results_tables``). Its training terms plug into zoo's engine through one
hook, zoo.training_hook.TrainingHook (research.hooks.ExperimentHook).
"""
