"""`make demo`: the embedded default experiment (teacher -> KD / DKD / LTKD on Fashion-MNIST-LT)."""

PLAN = """\
ltkd_jax demo (Fashion-MNIST-LT, imbalance factor 100, CPU-sized models):
  1. prepare Fashion-MNIST offline from Debian's dataset-fashion-mnist package
  2. train the teacher with cross-entropy on the long-tailed split
  3. train the CE student and distil KD, DKD and LTKD students from that teacher
  4. print | method | head | medium | tail | all | for every run
The training stages land with the training issue; until then this prints the plan only."""


def main() -> None:
    print(PLAN)


if __name__ == "__main__":
    main()
