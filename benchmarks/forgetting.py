"""Benchmark: catastrophic forgetting of the LoRA classifier, and a replay buffer against it.

Data: AG News (benchmarks/_common.py), text = title + description. Split: seed-0 shuffle; training rows from
the train part (rows 0-3,999), test rows from the test part (rows 4,600...). Task A = World/Sports, task B =
Business/Sci/Tech (new classes). One 4-label head; MiniLM base, 4-bit NF4 LoRA, 2 epochs per task, seed 0.
Sequential: train on A, then continue on B. Replay: B plus 5% as many A rows, mixed in.
"""

import tempfile

from _common import DATA, LABELS, SPLIT_TEXT, ag_split

from promptclf.core.metrics import classification_metrics
from promptclf.core.usage import Usage
from promptclf.methods.finetune import finetune

N_TRAIN, N_TEST, REPLAY = 800, 400, 0.05
train, _, test = ag_split()
task = {"A": ("World", "Sports"), "B": ("Business", "Sci/Tech")}
rows = {t: [r for r in train if r["label"] in names][:N_TRAIN] for t, names in task.items()}
tests = {t: [r for r in test if r["label"] in names][:N_TEST] for t, names in task.items()}


def accuracy(method, t):
    preds = [p.label for _, p in sorted(method.predict([r["text"] for r in tests[t]], Usage()))]
    return classification_metrics([r["label"] for r in tests[t]], preds, LABELS)["accuracy"]


options = dict(epochs=2, quantize="4bit", progress=False, seed=0)
with tempfile.TemporaryDirectory() as tmp:
    after_a = finetune(rows["A"], LABELS, out=f"{tmp}/a", **options)
    matrix = {("A", "A"): accuracy(after_a, "A"), ("B", "A"): accuracy(after_a, "B")}
    after_b = finetune(rows["B"], LABELS, out=f"{tmp}/b", init_from=f"{tmp}/a", **options)
    matrix.update({("A", "B"): accuracy(after_b, "A"), ("B", "B"): accuracy(after_b, "B")})
    buffer = rows["A"][: int(REPLAY * N_TRAIN)]
    replayed = finetune(rows["B"] + buffer, LABELS, out=f"{tmp}/r", init_from=f"{tmp}/a", **options)
    replay = {"A": accuracy(replayed, "A"), "B": accuracy(replayed, "B")}

print(f"data: {DATA}; split: {SPLIT_TEXT}; {N_TRAIN} train / {N_TEST} test rows per task; seed 0")
print("accuracy on task (rows) after training on (columns):")
print(f"{'':>8} {'after A':>8} {'after B':>8} {'after B + replay':>17}")
for t in "AB":
    print(f"{'task ' + t:>8} {matrix[(t, 'A')]:>8.3f} {matrix[(t, 'B')]:>8.3f} {replay[t]:>17.3f}")
print(f"replay buffer: {len(buffer)} task-A rows ({REPLAY:.0%} of task A)")
print(f"task A kept with replay vs without: {replay['A'] / max(matrix[('A', 'B')], 1e-9):.1f}x")
