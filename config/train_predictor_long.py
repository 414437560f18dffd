# The hour-long CPU run: the quick start's model with step states (each DAG step attends
# over the text), texts read respaced and the forms spacing cannot tidy in the data, for
# 16,500 iterations, sized to finish within an hour on 2 CPU cores.
# docs/results.md gives what it reached.
out_dir = "out-predictor-long"
eval_interval = 1000
log_interval = 100
# batch 32, block 32, dag_depth 4, 4+4 digits, 0-3 operations: train_predictor.py's defaults

depth_power = 2.0
literal_states = True
step_states = True  # each DAG step attends over the text (docs/results.md: the step-state ablation)
respace = True  # `3*4-2` read as `3 * 4 - 2`
p_trailing_zeros = 0.05
p_neg_group = 0.1  # -(a - b), -(-3), --3
p_redundant_parens = 0.05

n_layer = 4
n_head = 4
n_embd = 128
dropout = 0.0

learning_rate = 1e-3
max_iters = 16500
lr_decay_iters = 16500
warmup_iters = 100
min_lr = 1e-4
device = "cpu"
