# The full model on a CPU (sized for a 30-minute budget on 2 cores): a 4-layer GPT with DAG
# heads that writes exact answers. The plain GPT baseline is the same command with --dag_depth=0.
# $ python train.py config/train_daggpt.py
# $ python train.py config/train_daggpt.py --dag_depth=0 --out_dir=out-gpt
out_dir = "out-daggpt"
eval_interval = 250
eval_iters = 4
log_interval = 50
batch_size = 32
block_size = 64
max_expr_depth = 3
depth_power = 2.0
n_layer = 4
n_head = 4
n_embd = 128
dag_depth = 4
learning_rate = 1e-3
max_iters = 2415  # as many steps as the 30-minute budget holds on 2 CPU cores (docs/results.md)
lr_decay_iters = 2415
warmup_iters = 50
min_lr = 1e-4
literal_states = True  # signs and coefficients also read each input literal state, as the predictor configs
