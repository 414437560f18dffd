# The longer CPU run: the quick start's model, heads and data for 12,000 iterations,
# sized to finish within an hour on 2 CPU cores (55 min measured). README's
# "Measured results" gives what it reached.
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
literal_states = True

n_layer = 4
n_head = 4
n_embd = 128
dropout = 0.0

learning_rate = 1e-3
max_iters = 12000
lr_decay_iters = 12000
warmup_iters = 100
min_lr = 1e-4
device = "cpu"
