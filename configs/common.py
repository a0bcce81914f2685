"""What every experiment shares: `base(dataset, arg, ...)` builds the config of one run from the data set's
recipe (given by its config file) and the method's defaults below. Sources: mdistiller's configs
(configs/cifar100/*.yaml, configs/imagenet/*.yaml there), the paper, or "assumed" where neither says."""

import ml_collections

from ltkd_jax import config as config_lib

# DKD's beta per pair, from mdistiller's configs (alpha is 1 everywhere).
DKD_BETA = {
    "resnet32x4-resnet8x4": 8.0, "resnet32x4-shufflenet_v1": 8.0, "wrn_40_2-shufflenet_v1": 8.0,
    "resnet50_cifar-mobilenet_v2": 8.0, "vgg13-vgg8": 6.0, "wrn_40_2-wrn_40_1": 6.0, "vgg13-mobilenet_v2": 6.0,
    "resnet110-resnet32": 2.0, "resnet34-resnet18": 0.5, "resnet50-mobilenet_v1": 2.0,
    "demo_resnet_teacher-demo_resnet_student": 8.0,  # assumed (as resnet32x4-resnet8x4)
}
REVIEWKD_WEIGHT = {"resnet34-resnet18": 1.0, "resnet50-mobilenet_v1": 8.0}  # mdistiller; 5.0 for the CIFAR pairs
STUDENT_PREACT_PAIRS = ("resnet34-resnet18", "resnet50-mobilenet_v1")  # mdistiller: pre-ReLU features on ImageNet
LOW_LR_STUDENTS = ("shufflenet_v1", "mobilenet_v2")  # mdistiller lowers their learning rate to 0.01 on CIFAR


def base(dataset: str, arg: str, *, num_epochs: int, batch_size: int, learning_rate: float, lr_decay_epochs,
         weight_decay: float, warmup_epochs: int) -> ml_collections.ConfigDict:
    """One run of `dataset` picked by `arg` ("method,teacher-student,gamma"); any field is overridable."""
    method, teacher, student, imbalance_factor = config_lib.parse_arg(arg)
    c = ml_collections.ConfigDict()
    c.arg, c.method, c.teacher_model, c.student_model = arg, method, teacher, student
    c.teacher_only = False  # train (or reuse) this config's teacher, then stop (the sweep's teacher jobs)
    # Students trained with this one in one program, sharing its teacher's forward pass, e.g.
    # "student,kd,dkd,ltkd:distill.alpha=2:distill.beta=8"; each in <workdir>/<member> ("" = this run alone).
    c.population = ""

    c.dataset = ml_collections.ConfigDict()
    c.dataset.name = dataset
    c.dataset.data_dir = ""  # '' = tfds's default (or $TFDS_DATA_DIR)
    c.dataset.imbalance_factor = imbalance_factor  # gamma = n_max / n_min (LDAM-DRW's exponential profile)
    c.dataset.subset_seed = 0  # LDAM-DRW's selection seed: the literature's CIFAR-100-LT subset
    c.dataset.num_groups = 3  # head / medium / tail (the paper)
    c.dataset.split_file = ""  # ImageNet-LT: an OLTR-style 'path label' list instead of the exponential profile
    c.dataset.image_size = 0  # 0 = the data set's native size
    c.dataset.device_resident = True  # small data sets live on the accelerator; batches drawn in the step

    # Recipe (mdistiller): SGD momentum 0.9 (no Nesterov), weight decay on every parameter, step decay x0.1.
    c.num_epochs = num_epochs
    c.batch_size = batch_size  # global batch, split over all devices of all processes
    c.learning_rate = learning_rate
    c.lr_decay_epochs = tuple(lr_decay_epochs)
    c.lr_decay_rate = 0.1
    c.momentum = 0.9
    c.weight_decay = weight_decay
    c.dtype = "float32"  # compute dtype: 'float32' or 'bfloat16' (parameters stay float32)
    c.seed = 0

    # Student objective: ce_weight * CE + min(epoch / warmup_epochs, 1) * distill_weight * distill loss.
    c.ce_weight = 1.0
    c.distill_weight = 1.0
    c.warmup_epochs = warmup_epochs
    c.ce_loss = "cross_entropy"  # or "balanced_softmax": CE of logits + log class prior (Ren et al. 2020)
    c.teacher_loss = "cross_entropy"  # the teacher's; "balanced_softmax": a debiased one (its own directory)
    c.distill = ml_collections.ConfigDict()
    _method_defaults(c, f"{teacher}-{student}")

    # Where the teacher comes from: an explicit checkpoint, or <teachers_dir>/<data set>_gamma<γ>/<arch>_seed...
    # (trained there first if missing, shared by every student of that seed).
    c.teacher_checkpoint = ""
    c.teachers_dir = ""  # '' = <workdir>/../teachers
    c.teacher_seed = 0
    c.teacher_num_epochs = 0  # 0 = num_epochs
    c.teacher_learning_rate = learning_rate  # teachers train with CE (teacher_loss) on the same split and recipe

    c.eval_batch_size = 1024  # global; evaluation pads the last batch and masks it
    c.eval_every_epochs = 1
    c.checkpoint_every_epochs = 1
    c.keep_checkpoints = 2
    c.log_every_steps = 50
    c.steps_per_dispatch = 1  # >1: several steps per jitted call with lax.scan (accelerators)
    c.overwrite = False  # True: a workdir holding another config is deleted and started afresh
    return c


def _method_defaults(c, pair: str) -> None:
    """The method's loss weights and temperature (the CIFAR values; imagenet_lt.py changes its own)."""
    d, method = c.distill, c.method
    if method in config_lib.CE_METHODS:
        c.warmup_epochs = 0
    elif method == "kd":
        d.temperature = 4.0  # mdistiller KD
        c.ce_weight, c.distill_weight, c.warmup_epochs = 0.1, 0.9, 0
    elif method == "dkd":
        d.temperature, d.alpha, d.beta = 4.0, 1.0, DKD_BETA.get(pair, 8.0)
    elif method == "bkd":  # EricZsy/BalancedKnowledgeDistillation, its CIFAR setting (weights from epoch 0)
        d.temperature, d.alpha, d.beta_cb = 2.0, 1.0, 0.9999
        c.warmup_epochs = 0
    elif method == "dive":  # He et al., ICCV 2021: (1 - alpha) balanced-softmax CE + alpha KD, debiased teacher
        d.temperature, d.power = 3.0, 0.5
        c.ce_weight, c.distill_weight, c.warmup_epochs = 0.5, 0.5, 0  # 1 - alpha, alpha = 0.5
        c.ce_loss = c.teacher_loss = "balanced_softmax"
    elif method == "kd_ls":  # logit standardisation (Sun et al. 2024) README: --base-temp 2 --kd-weight 9 on KD
        d.temperature = 2.0
        c.ce_weight, c.distill_weight, c.warmup_epochs = 0.1, 9.0, 0  # mdistiller KD's CE weight 0.1
    elif method == "ltkd_ls":  # LTKD on standardised logits, LS's base temperature 2 and KD weight 9; alpha, beta
        d.temperature, d.alpha, d.beta = 2.0, 6.0, 6.0  # as LTKD's
        c.distill_weight = 9.0
    elif method.startswith("ltkd"):
        d.temperature = 4.0  # assumed (the paper does not state T); CE weight 1 and DKD's warm-up: assumed
        if method in ("ltkd", "ltkd_inter_biased", "ltkd_inter_balanced"):
            d.alpha = 6.0  # paper Fig. 4: best overall on r32x4 -> r8x4, gamma = 20
        if method in ("ltkd", "ltkd_intra_uniform"):
            d.beta = 6.0  # paper Fig. 4
    elif method == "fitnet":
        c.distill_weight, c.warmup_epochs = 100.0, 0  # mdistiller FITNET.LOSS.FEAT_WEIGHT
        d.hint_layer = 2  # mdistiller FITNET.HINT_LAYER
    elif method == "reviewkd":
        c.distill_weight = REVIEWKD_WEIGHT.get(pair, 5.0)  # mdistiller REVIEWKD.REVIEWKD_WEIGHT
        d.student_preact = pair in STUDENT_PREACT_PAIRS
        d.mid_channel = 0  # 0: min(512, the student's last width), as mdistiller
