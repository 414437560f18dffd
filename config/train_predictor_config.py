# Default DAG predictor run: a 4-layer, 128-wide GPT on expressions with up to 3
# operations (dag_depth 4), deep ones drawn more often (depth_power=2), read respaced and
# with some negated and parenthesized groups and literals, sized for a 10-minute budget on
# 2 CPU cores (docs/results.md gives what it reached).
out_dir = "out-predictor"
eval_interval = 250
log_interval = 25
eval_iters = 4
batch_size = 32
block_size = 32
num_workers = 1

dag_depth = 4
max_digits = 4
max_decimal_places = 4
max_expr_depth = 3
depth_power = 2.0  # depth d drawn with weight (d + 1) ** 2: most errors are at depth 3
respace = True  # read every text in tidy spacing: `3*4-2` as `3 * 4 - 2`
p_neg_group = 0.05  # and show some of what spacing cannot tidy: -(a - b), -(-3), --3,
p_redundant_parens = 0.05  # (3), (1 + 2)
literal_states = True  # signs and coefficients also read each input literal's own state

n_layer = 4
n_head = 4
n_embd = 128
dropout = 0.0

learning_rate = 1e-3
max_iters = 6000
lr_decay_iters = 6000
warmup_iters = 50
min_lr = 1e-4
device = "cpu"
