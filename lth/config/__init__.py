"""The one description of a run: dataclasses that generate the CLI, presets, recipes, hash.

Every section field is a flag (`--field-name`), its help, default and allowed range taken from
where it is defined (lth.knobs). Pluggable choices (dataset, model, init, recipe, optimizer, LR
schedule, in-round schedule, criterion, scope, round restart) come from registries
(lth.registry) whose entries declare their own parameters and traits: `--alpha` belongs to the
`ocp` schedule, and given with `--schedule agp` it is a one-line error naming its entry. Choice
lists and entry flags are read from the registries when a parser is built or a config resolved,
after the plugins (lth.plugins) have registered theirs. Precedence: field defaults <
`--config FILE.json` < `--preset` < explicit flags. Training fields left unset take their value from the chosen `--recipe` when the config is
resolved.

The resolved config keeps only the chosen entries' parameters and drops what the run never
reads (a rate overridden by --final-sparsity, seeds of randomness the run does not draw), so
equivalent configs have one hash and share a run directory (docs/DESIGN.md §6).

    cfg = config.from_overrides({"schedule": "ocp"}, preset="quick")   # resolved and validated
    cfg.hash()                                                          # names the run directory
"""
from lth.config.flags import (NAMED_BY_SPEC, _flag_type, build_parser, explicit_flags,  # noqa: F401
                              from_args)
from lth.config.migrate import migrate_v1, migrate_v2  # noqa: F401
from lth.config.presets import PRESET_SOURCES, PRESETS, from_overrides  # noqa: F401
from lth.config.sections import (CHOICES, FORMAT, SECTIONS, DataConfig, ModelConfig, PruneConfig,  # noqa: F401
                                 ResolvedConfig, RunConfig, RuntimeConfig, SeedConfig, TrainConfig,
                                 _field_type, _flat_owners, apply_overrides, check_lr_context,
                                 differing_fields, load_config_file, params_of, resolve, validate)

__all__ = ["CHOICES", "FORMAT", "PRESETS", "PRESET_SOURCES", "SECTIONS", "DataConfig", "ModelConfig", "PruneConfig",
           "ResolvedConfig", "RunConfig", "RuntimeConfig", "SeedConfig", "TrainConfig", "apply_overrides",
           "build_parser", "check_lr_context", "differing_fields", "explicit_flags", "from_args", "from_overrides",
           "load_config_file", "migrate_v1", "migrate_v2", "params_of", "resolve", "validate"]
