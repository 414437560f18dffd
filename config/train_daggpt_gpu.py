# The full model on one modern GPU: expressions of 0-5 operations, a 6-layer GPT with DAG
# heads; the plain GPT baseline is the same command with --dag_depth=0.
# $ python train.py config/train_daggpt_gpu.py
# $ python train.py config/train_daggpt_gpu.py --dag_depth=0 --out_dir=out-gpt-gpu
out_dir = "out-daggpt-gpu"
device = "cuda"
dtype = "bfloat16"
eval_interval = 1000
eval_iters = 20
log_interval = 100
batch_size = 128
block_size = 96
num_workers = 6  # the text rows are made on the CPU: several workers keep the GPU fed
max_expr_depth = 5
depth_power = 2.0
n_layer = 6
n_head = 6
n_embd = 384
dag_depth = 6
learning_rate = 1e-3
max_iters = 20000
lr_decay_iters = 20000
warmup_iters = 500
min_lr = 1e-4
literal_states = True
step_states = True  # as config/train_predictor_gpu.py
