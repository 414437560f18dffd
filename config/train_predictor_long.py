# The hour-long CPU run: the quick start's model, with deep expressions drawn more often
# (depth_power=2) and the forms people write in the data, for 36,000 iterations, sized to
# finish within an hour on 2 CPU cores. README's "Measured results" gives what it reached.
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
p_trailing_zeros = 0.15
p_no_spaces = 0.15
p_space_in_parens = 0.15
p_neg_group = 0.15
p_redundant_parens = 0.15

n_layer = 4
n_head = 4
n_embd = 128
dropout = 0.0

learning_rate = 1e-3
max_iters = 36000
lr_decay_iters = 36000
warmup_iters = 100
min_lr = 1e-4
device = "cpu"
