"""Recipe loading, overrides and validation, with the 8B recipes' numbers checked by hand.

The 8B recipes cannot run here; these tests pin what their plan says: world size, global batch and the
per-GPU memory estimate, and that inconsistent edits are refused before any worker starts.
"""

from __future__ import annotations

import pytest

from trialpanorama.config import PROJECT_ROOT, ConfigError
from trialpanorama.train.recipe import GIB, Arch, estimate_memory, load_recipe, resolve, steps_for_epochs

RECIPES = PROJECT_ROOT / "conf" / "train"
QWEN = RECIPES / "qwen3-8b-full-fsdp.yaml"
LLAMA = RECIPES / "llama3-8b-lora.yaml"
TINY = RECIPES / "tiny-cpu.yaml"


@pytest.mark.parametrize("recipe", sorted(RECIPES.glob("*.yaml")), ids=lambda p: p.name)
def test_every_recipe_has_its_command_in_the_header(recipe):
    head = recipe.read_text().splitlines()[:6]
    assert any(f"--config conf/train/{recipe.name}" in line for line in head if line.startswith("#"))


def test_qwen3_8b_plan():
    plan = resolve(load_recipe(QWEN))
    assert plan.world_size == 8 and plan.global_batch == 16 == 1 * 2 * 8
    assert plan.arch is not None and plan.arch.num_params() == 8_190_735_360  # Qwen3-8B: 8.19B
    mem = plan.memory
    p = plan.arch.num_params()
    # full FT, fp32 master + grads + Adam moments, sharded over 8 GPUs by FSDP
    assert mem.params == pytest.approx(4 * p / 8) and mem.grads == pytest.approx(4 * p / 8)
    assert mem.optimizer == pytest.approx(8 * p / 8)
    assert 20 < mem.total / GIB < 40  # fits an 80 GB GPU with room (measured figure to come from a GPU run)
    assert [s.name for s in plan.stages] == ["stage1", "stage2"]
    assert set(plan.stages[0].tasks) == {"arm_design", "eligibility_criteria_design", "endpoint_design",
                                         "trial_completion_assessment"}
    assert plan.stages[0].epochs == 3 and plan.stages[1].epochs == 10
    assert plan.precision == "bf16" and plan.parallelism == "fsdp"


def test_llama3_8b_lora_plan():
    plan = resolve(load_recipe(LLAMA))
    assert plan.world_size == 4 and plan.global_batch == 16
    assert plan.arch.num_params() == 8_030_261_248  # Meta-Llama-3-8B
    lora = plan.arch.lora_params(16, ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj",
                                      "down_proj"])
    assert lora == 41_943_040  # the figure peft prints for r=16 on all linear layers of Llama-3-8B
    mem = plan.memory
    assert mem.params == pytest.approx(2 * plan.arch.num_params() + 4 * lora)  # frozen bf16, replicated
    assert mem.optimizer == pytest.approx(8 * lora)
    assert mem.total / GIB < 80 * 0.9


def test_full_finetune_without_fsdp_is_refused():
    # 8B full FT under DDP needs 16 B/param unsharded = ~122 GiB per GPU: must not pass validation
    with pytest.raises(ConfigError, match="exceeds"):
        resolve(load_recipe(QWEN, ["parallelism=ddp"]))


def test_fsdp_sharding_scales_with_world():
    arch = Arch.from_mapping(load_recipe(QWEN).get("model.arch"))
    kw = dict(method="full", parallelism="fsdp", micro_batch=1, seq_len=8192, precision="bf16",
              activation_checkpointing=True)
    m8, m16 = estimate_memory(arch, world=8, **kw), estimate_memory(arch, world=16, **kw)
    assert m16.optimizer == pytest.approx(m8.optimizer / 2)
    assert m16.activations == m8.activations
    no_ac = estimate_memory(arch, world=8, **{**kw, "activation_checkpointing": False})
    assert no_ac.activations > 10 * m8.activations


@pytest.mark.parametrize("override,message", [
    (["batch.grad_accum=3"], "global_batch"),
    (["resources.num_workers=6"], "num_nodes x workers_per_node"),
    (["method=qlora"], "method"),
    (["optim.lr=5"], "optim.lr"),
    (["stages.0.tasks.not_a_task={weight: 1}"], "unknown task"),
    (["stages.stage1.max_steps=10"], "exactly one of epochs or max_steps"),
    (["resources.use_gpu=false", "resources.gpus_per_worker=0"], "bf16"),
])
def test_inconsistent_recipes_are_refused(override, message):
    with pytest.raises(ConfigError, match=message):
        resolve(load_recipe(QWEN, override))


def test_overrides_reach_lists_by_index_or_stage_name():
    cfg = load_recipe(TINY, ["stages.1.max_steps=7", "stages.stage1.max_steps=9", "batch.grad_accum=1",
                             "batch.global_batch=8"])
    plan = resolve(cfg)
    assert [s.max_steps for s in plan.stages] == [9, 7]
    assert plan.global_batch == 8


def test_run_name_is_stable_and_changes_with_the_recipe():
    a = resolve(load_recipe(TINY)).run_name
    assert a == resolve(load_recipe(TINY)).run_name
    assert a != resolve(load_recipe(TINY, ["optim.lr=0.001"])).run_name
    assert resolve(load_recipe(TINY, ["run.name=my-run"])).run_name == "my-run"


def test_steps_for_epochs():
    assert steps_for_epochs(3, 1000, micro=1, world=8, accum=2) == 188  # ceil(3000 / 16)
    assert steps_for_epochs(0.01, 10, micro=4, world=2, accum=2) == 1


def test_relative_sqlite_tracking_uri_is_pinned_for_workers(tmp_path, monkeypatch):
    from trialpanorama.train.run import absolute_sqlite_uri

    monkeypatch.chdir(tmp_path)
    assert absolute_sqlite_uri("sqlite:///mlflow.db") == f"sqlite:///{tmp_path.resolve() / 'mlflow.db'}"
    assert absolute_sqlite_uri("sqlite:////abs/m.db") == "sqlite:////abs/m.db"
    assert absolute_sqlite_uri("http://127.0.0.1:5000") == "http://127.0.0.1:5000"


def test_the_run_is_named_after_the_task_tables_it_reads(tmp_path):
    """Re-submitting a recipe resumes its run, and skips its finished stages: only right while the data is the
    same. A new version of a task table, or a rebuilt table (a new Delta table id at version 0), must name a new
    run; and every stage reads the version pinned at submission."""
    import shutil

    import deltalake

    from trialpanorama.train.run import pin_data

    lake = tmp_path / "lake"
    shutil.copytree(PROJECT_ROOT / "tests" / "fixtures" / "train" / "lake", lake)
    two_tasks = "{arm_design: {weight: 1.0, version: null}, sample_size_estimation: {weight: 1.0, version: null}}"
    cfg = load_recipe(TINY, [f"stages.stage1.tasks={two_tasks}", f"stages.stage2.tasks={two_tasks}"])

    def pinned():
        return pin_data(resolve(cfg, str(lake)), cfg)

    first = pinned()
    arm = str(lake / "tasks" / "arm_design")
    version = deltalake.DeltaTable(arm).version()
    assert {s.tasks["arm_design"]["version"] for s in first.stages} == {version}
    assert pinned().run_name == first.run_name  # same data: the same run, resumed
    assert first.run_name.startswith("tiny-cpu-") and first.run_name != resolve(cfg, str(lake)).run_name

    rows = deltalake.DeltaTable(arm).to_pyarrow_table()
    deltalake.write_deltalake(arm, rows, mode="append")
    appended = pinned()
    assert appended.run_name != first.run_name
    assert appended.stages[0].tasks["arm_design"]["version"] == version + 1

    shutil.rmtree(arm)
    deltalake.write_deltalake(arm, rows)  # the lake rebuilt: version 0 again, but another table
    rebuilt = pinned()
    assert rebuilt.stages[0].tasks["arm_design"]["version"] == 0
    assert rebuilt.run_name not in (first.run_name, appended.run_name)
    named = load_recipe(TINY, [f"stages.stage1.tasks={two_tasks}", f"stages.stage2.tasks={two_tasks}", "run.name=mine"])
    assert pin_data(resolve(named, str(lake)), named).run_name == "mine"
