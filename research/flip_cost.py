"""What one view costs against flip TTA: held-out ORL verification of registered models in both
protocols, from the same forward passes (zoo.validation's ``one_view`` report).

    python -m research.flip_cost vgg19-ecloss vgg19-softmax-s0 ... \
        --out docs/results/flip_vs_one_view.json

Each model is evaluated on its own training run's ORL split (the held-out identities, 900 pairs,
10 folds; each fold's threshold chosen on the other folds, in each protocol).
"""
import argparse
import json
import sys
from pathlib import Path

import zoo
from zoo.validation import ONE_VIEW_KEYS, verification_on


def flip_cost(name: str) -> dict:
    model = zoo.load(name)
    cfg = model.zoo_config
    train = cfg.get("training", {})
    rep = verification_on(model, "orl", cfg["arch"]["input_size"], "cpu", flip=True,
                          orl_num_train=train.get("orl_num_train", 30),
                          orl_split_seed=train.get("orl_split_seed", 0),
                          orl_num_val=train.get("orl_num_val", 0),
                          orl_fold=train.get("orl_fold", 0))
    return {"flip_tta": {k: rep[k] for k in ONE_VIEW_KEYS}, "one_view": rep["one_view"]}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("models", nargs="+", help="registered model names")
    p.add_argument("--out", required=True)
    args = p.parse_args(argv)
    rows = {}
    for name in args.models:
        rows[name] = flip_cost(name)
        f, o = rows[name]["flip_tta"], rows[name]["one_view"]
        print(f"{name}: accuracy {f['accuracy']:.4f} flip / {o['accuracy']:.4f} one view, AUC "
              f"{f['auc']:.4f} / {o['auc']:.4f}", flush=True)
    Path(args.out).write_text(json.dumps(rows, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
