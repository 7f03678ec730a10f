import pytest

from sparseinfer.sparsify.errors import RecipeError
from sparseinfer.sparsify.manager import RecipeManager
from sparseinfer.sparsify.modifiers import GMPruningModifier, LearningRateModifier
from sparseinfer.sparsify.recipe import builtin_recipes, load_recipe, parse_recipe

GOOD = """
num_epochs: 6
modifiers:
  - GMPruningModifier:
      params: ["re:conv.*\\\\.weight", fc1.weight]
      init_sparsity: 0.1
      final_sparsity: 0.8
      start_epoch: 1
      end_epoch: 4
      update_frequency: 0.5
      scope: global
  - LearningRateModifier: {lr_func: cosine, init_lr: 0.05, final_lr: 0.001, end_epoch: $num_epochs}
"""


def test_parses_fields_and_variables():
    recipe = parse_recipe(GOOD)
    gmp, lr = recipe.modifiers
    assert isinstance(gmp, GMPruningModifier) and isinstance(lr, LearningRateModifier)
    assert gmp.params == ["re:conv.*\\.weight", "fc1.weight"]
    assert (gmp.init_sparsity, gmp.final_sparsity, gmp.update_frequency, gmp.scope) == (0.1, 0.8, 0.5, "global")
    assert lr.end_epoch == 6.0 and recipe.max_epochs == 6.0


def test_sparseml_tag_style():
    recipe = parse_recipe("modifiers:\n  - !GMPruningModifier\n    final_sparsity: 0.7\n    end_epoch: 3\n"
                          "  - !EpochRangeModifier\n    end_epoch: 5\n")
    assert recipe.modifiers[0].final_sparsity == 0.7 and recipe.max_epochs == 5


@pytest.mark.parametrize("text, path, message", [
    ("modifiers:\n  - MagicModifier: {}\n", "modifiers[0]", "unknown modifier 'MagicModifier'"),
    ("modifiers:\n  - GMPruningModifier: {final_sparsty: 0.9}\n",
     "modifiers[0].GMPruningModifier.final_sparsty", "unknown field"),
    ("modifiers:\n  - GMPruningModifier: {final_sparsity: high}\n",
     "modifiers[0].GMPruningModifier.final_sparsity", "expected a number"),
    ("modifiers:\n  - GMPruningModifier: {final_sparsity: 1.5}\n",
     "modifiers[0].GMPruningModifier.final_sparsity", r"must be in \[0, 1\)"),
    ("modifiers:\n  - GMPruningModifier: {start_epoch: 5, end_epoch: 2}\n",
     "modifiers[0].GMPruningModifier.end_epoch", "must be"),
    ("modifiers:\n  - GMPruningModifier: {scope: everywhere}\n",
     "modifiers[0].GMPruningModifier.scope", "expected one of"),
    ("modifiers:\n  - GMPruningModifier: {leave_enabled: 1}\n",
     "modifiers[0].GMPruningModifier.leave_enabled", "expected true or false"),
    ("modifiers:\n  - LearningRateModifier: {lr_func: cosine, end_epoch: $epochs}\n",
     "modifiers[0].LearningRateModifier.end_epoch", "unknown variable"),
    ("modifiers:\n  - LearningRateModifier: {lr_func: triangle}\n",
     "modifiers[0].LearningRateModifier.lr_func", "expected one of"),
    ("modifiers: []\n", "modifiers", "non-empty list"),
    ("epochs: 3\n", "<text>", "missing the 'modifiers' list"),
    ("modifiers:\n  - GMPruningModifier: {}\n    ConstantPruningModifier: {}\n", "modifiers[0]", "exactly one key"),
    ("modifiers: [\n", "<text>", "not valid YAML"),
])
def test_recipe_errors_name_the_field(text, path, message):
    with pytest.raises(RecipeError, match=message) as info:
        parse_recipe(text)
    assert info.value.path == path


def test_params_matching_nothing(tiny_net):
    manager = RecipeManager.from_yaml("modifiers:\n  - GMPruningModifier: {params: [conv1.weight, 're:head.*']}\n")
    with pytest.raises(RecipeError, match="'re:head.\\*' matches no parameter") as info:
        manager.one_shot(tiny_net)
    assert info.value.path == "modifiers[0].GMPruningModifier.params"
    assert "conv1.weight" in str(info.value)  # lists what exists


def test_ignore_matching_nothing_and_everything(tiny_net):
    with pytest.raises(RecipeError, match="'nope' matches no parameter"):
        RecipeManager.from_yaml("modifiers:\n  - GMPruningModifier: {ignore: [nope]}\n").one_shot(tiny_net)
    with pytest.raises(RecipeError, match="excluded by 'ignore'"):
        RecipeManager.from_yaml("modifiers:\n  - GMPruningModifier: {params: [fc1.weight], ignore: ['re:fc.*']}\n"
                                ).one_shot(tiny_net)


def test_block4_rejects_incompatible_param(tiny_net):
    # conv1 has 4 input channels (ok); fc2 has 16 inputs (ok); the bias is 1-D
    with pytest.raises(RecipeError, match="cannot be block4-pruned"):
        RecipeManager.from_yaml("modifiers:\n  - BlockPruningModifier: {params: [fc2.bias]}\n").one_shot(tiny_net)


def test_missing_recipe_file():
    with pytest.raises(FileNotFoundError, match="neither a file nor a builtin"):
        load_recipe("no_such_recipe.yaml")


def test_builtin_recipes_parse():
    found = builtin_recipes()
    assert found, "the package ships recipes in sparseinfer/sparsify/recipes"
    for name in found:
        assert load_recipe(name).modifiers
