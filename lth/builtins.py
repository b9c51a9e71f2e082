"""Every built-in registry entry, registered: importing this module fills the ten registries
(models, datasets, inits, in-round schedules, LR schedules, optimizers, criteria, scopes, round
restarts, recipes) with lth's own entries. lth.plugins imports it before any plugin registers,
so a name clash is always the plugin's; lth.config reads the same registries."""
from lth.data.datasets import DATASETS  # noqa: F401
from lth.lottery.restart import RESTARTS  # noqa: F401
from lth.models import MODELS  # noqa: F401
from lth.models.init import INITS  # noqa: F401
from lth.pruning.criteria import CRITERIA  # noqa: F401
from lth.pruning.schedules import SCHEDULES  # noqa: F401
from lth.pruning.scope import SCOPES  # noqa: F401
from lth.training.lr_schedules import LR_SCHEDULES  # noqa: F401  (lth.training registers the retraining ones too)
from lth.training.optimizers import OPTIMIZERS  # noqa: F401
from lth.training.recipes import RECIPES  # noqa: F401
