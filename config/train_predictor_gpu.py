# DAG predictor on one modern GPU (sized for an 80 GB H100): a GPT-2-small-sized model
# on expressions with up to 5 operations (dag_depth 6), bf16 autocast, torch.compile,
# and 8 DataLoader workers making data. Not yet run on a GPU by us (none was available
# when it was written); tests/test_train_predictor.py runs it shrunk on the CPU.
out_dir = "out-predictor-gpu"
eval_interval = 500
log_interval = 50
eval_iters = 20
batch_size = 256
block_size = 64
num_workers = 8

dag_depth = 6
max_digits = 4
max_decimal_places = 4
max_expr_depth = 5
depth_power = 2.0  # as the CPU configs: deep expressions, where the errors are, drawn more often
# texts read respaced, and the forms people write that spacing cannot tidy, as the CPU configs
respace = True
p_trailing_zeros = 0.05
p_neg_group = 0.1
p_redundant_parens = 0.05
literal_states = True  # as the CPU configs: signs and coefficients read each literal's state
step_states = True  # each DAG step gets its own state, attending over the text, read by the gate and coefficient heads

n_layer = 12
n_head = 12
n_embd = 768
dropout = 0.0

learning_rate = 6e-4
max_iters = 20000
lr_decay_iters = 20000
warmup_iters = 500
min_lr = 6e-5
device = "cuda"
dtype = "bfloat16"
compile = True
