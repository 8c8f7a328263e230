"""Protocol: patient-grouped k-fold evaluation and the final held-out evaluation, the only
reader of the test split. Imports core, data, evaluation and training.
"""
