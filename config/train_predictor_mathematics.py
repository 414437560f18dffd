# DAG predictor on the Mathematics Dataset's arithmetic training questions (issue 19):
# the train-easy/medium/hard files of data/mathematics/prepare.py, read as written, the
# DAG predicted at each question's last token. dag_depth 12 holds every question of the
# extrapolation sets (10-12 literals; training questions have at most 7), block_size 64
# their longest (55 GPT-2 tokens; training questions at most 35). Sized for about 20
# minutes on the 2 CPU cores (docs/results.md gives what it reached).
out_dir = "out-predictor-mathematics"
dataset = "mathematics"
math_dir = "data/mathematics"
math_prefixes = True  # a `Calculate E.` question also teaches the DAG of each prefix of E, as the expressions do
eval_interval = 1000
log_interval = 250
eval_iters = 4
batch_size = 32
block_size = 64
num_workers = 1

dag_depth = 12
value_head = "copy"  # literals of up to 19 digits: copied from the text, never written as digits
literal_states = True  # signs and coefficients also read each input literal's own state
max_coefficient = 1  # every plan of the benchmark's questions has coefficients and exponents of +-1

n_layer = 4
n_head = 4
n_embd = 128
dropout = 0.0

learning_rate = 1e-3
max_iters = 7000
lr_decay_iters = 7000
warmup_iters = 50
min_lr = 1e-4
device = "cpu"
