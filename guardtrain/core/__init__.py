"""The pure layer: errors, configs, codes, statistics, guard rules, rescue policy, attempts.

Nothing here imports TensorFlow, Keras or Ray (a test loads this package in a fresh process
and checks), so the decisions are tested in milliseconds (docs/architecture.md).
"""
