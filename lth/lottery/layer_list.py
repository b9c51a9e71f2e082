"""`python -m lth.run ... --layers-list`: the prunable layers a model offers, then exit.

    python -m lth.run --model torchvision:resnet50 --dataset imagefolder:DIR --layers all_but_output --layers-list

One row per candidate weight (lth.pruning.layers): name, kind (conv, linear, attention,
embedding), shape, weights, whether it is the output layer (@output) and whether the run's
--layers / --exclude would prune it. Builds the model from the run's config on the CPU and
writes nothing.
"""

from lth.pruning import layers


def print_layers(cfg) -> int:
    from lth.lottery import assemble
    dataset = assemble.load_data(cfg)
    model = assemble.build_model(cfg, dataset, cfg.seeds.init_seed, "cpu")
    rows = layers.describe(model, cfg.prune.layers, cfg.prune.exclude)
    width = max([len(r["name"]) for r in rows] + [4])
    print(f"{'name':<{width}}  {'kind':<9}  {'shape':<20}  {'weights':>10}  {'output':>6}  {'pruned':>6}")
    for r in rows:
        print(f"{r['name']:<{width}}  {r['kind']:<9}  {str(tuple(r['shape'])):<20}  {r['numel']:>10}  "
              f"{'yes' if r['output'] else '':>6}  {'yes' if r['pruned'] else '':>6}")
    pruned = sum(r["numel"] for r in rows if r["pruned"])
    total = sum(p.numel() for p in model.parameters())
    print(f"{cfg.model.model}: {sum(r['pruned'] for r in rows)} of {len(rows)} layers pruned by --layers {cfg.prune.layers}, "
          f"{pruned} of {total} parameters ({pruned / max(total, 1):.1%})")
    return 0
