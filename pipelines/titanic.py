"""The Titanic pipeline: the daily loop as one definition, every step in the tabular theme's image.

    prepare (processing: raw titanic.csv -> train / validation / new passengers)
      -> train (the Titanic program)
      -> evaluate (processing: evaluation.json, its AUC on the validation rows)
      -> AUC >= AucThreshold ?
           true:  register the model (its metrics: evaluation.json) and batch-predict the new passengers
           false: fail, saying the AUC and the threshold

    inv pipeline.run titanic                                   # here (TARGET=local), real containers
    inv pipeline.run titanic --param AucThreshold=0.85         # parameters as SageMaker takes them
    TARGET=sagemaker inv pipeline.run titanic                  # on SageMaker Pipelines
    TARGET=sagemaker inv pipeline.schedule titanic --cron '0 6 * * ? *'

A pipeline module defines build(ctx) and returns the SDK's Pipeline; ctx (gs_ds_env/pipeline/context.py) makes the
steps the project's way on both targets, and any SDK step can be added to them.
"""

from pathlib import Path

from sagemaker.workflow.condition_step import ConditionStep
from sagemaker.workflow.conditions import ConditionGreaterThanOrEqualTo
from sagemaker.workflow.fail_step import FailStep
from sagemaker.workflow.functions import Join, JsonGet
from sagemaker.workflow.parameters import ParameterFloat, ParameterString
from sagemaker.workflow.pipeline import Pipeline
from sagemaker.workflow.properties import PropertyFile

EXAMPLES = Path(__file__).resolve().parent.parent / "themes/tabular/example"
NEW_PASSENGERS = 50  # held out by prepare, their labels dropped: what the daily batch would bring


def build(ctx) -> Pipeline:
    if ctx.settings.theme != "tabular":
        raise ValueError(f"the titanic pipeline runs in the tabular theme's image, not {ctx.settings.theme}'s")
    from gs_ds_env.data import titanic

    raw = ParameterString("RawData", default_value=ctx.data(titanic.fetch(ctx.settings)[0]))
    threshold = ParameterFloat("AucThreshold", default_value=0.80)
    processing_type = ParameterString("ProcessingInstanceType", default_value="ml.m5.large")
    training_type = ParameterString("TrainingInstanceType", default_value="ml.m5.large")

    prepare = ctx.process_step(
        "prepare", EXAMPLES / "prepare.py", inputs={"raw": raw}, outputs=["train", "validation", "new"],
        arguments=["--new-rows", str(NEW_PASSENGERS), "--seed", str(ctx.settings.seed)],
        instance_type=processing_type,
    )  # fmt: skip
    split = prepare.properties.ProcessingOutputConfig.Outputs
    train = ctx.train_step(
        "train", {name: split[name].S3Output.S3Uri for name in ("train", "validation")}, instance_type=training_type
    )
    evaluation = PropertyFile(name="evaluation", output_name="evaluation", path="evaluation.json")
    evaluate = ctx.process_step(
        "evaluate", EXAMPLES / "evaluate.py",
        inputs={"model": train.properties.ModelArtifacts.S3ModelArtifacts, "test": split["validation"].S3Output.S3Uri},
        outputs=["evaluation"], property_files=[evaluation], instance_type=processing_type,
    )  # fmt: skip
    auc = JsonGet(
        step_name=evaluate.name, property_file=evaluation, json_path="binary_classification_metrics.auc.value"
    )
    good_enough = ConditionStep(
        "auc-good-enough",
        conditions=[ConditionGreaterThanOrEqualTo(left=auc, right=threshold)],
        if_steps=[
            *ctx.register_steps("register", train, evaluate, evaluation, gate="auc-good-enough"),
            *ctx.model_steps("predict", train, split["new"].S3Output.S3Uri, instance_type=processing_type),
        ],
        else_steps=[
            FailStep("auc-too-low", error_message=Join(on=" ", values=["AUC", auc, "is below AucThreshold", threshold]))
        ],
    )
    return Pipeline(
        name=ctx.name,
        parameters=[raw, threshold, processing_type, training_type],
        steps=[prepare, train, evaluate, good_enough],
        sagemaker_session=ctx.session,
    )
