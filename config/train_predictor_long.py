# The hour-long CPU run: the quick start's model with step states (each DAG step attends
# over the text), texts read respaced and the forms spacing cannot tidy in the data, for
# 16,500 iterations, sized to finish within an hour on 2 CPU cores.
# docs/results.md gives what it reached.
out_dir = "out-predictor-long"
eval_interval = 1000
log_interval = 100
eval_iters = 4
batch_size = 32
block_size = 32
num_workers = 1

dag_depth = 4
max_digits = 4
max_decimal_places = 4
max_expr_depth = 3
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
