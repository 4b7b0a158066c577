"""Train: start a training run as a background job and watch it; evaluate runs as jobs too."""

import streamlit as st

from core import store
from core.config import Settings
from core.crossval import STATE_FILE
from core.dataset import Dataset
from core.distributed import default_processes, max_processes
from core.ledger import latest_versions
from core.runs import EVAL_SPLITS, list_runs
from core.train import PRESETS, TrainConfig
from dashboard import jobs_view, loaders, state
from dashboard.markdown import escape
from dashboard.review_views import policy_choice

ENCODERS = ("resnet18", "resnet34", "resnet50", "mobilenet_v2", "efficientnet-b0")
SIZES = (64, 96, 128, 160, 192, 224, 256, 320, 384, 448, 512)
PRESET_HELP = {
    "quick": "resnet18 at 128 px: a CPU model in minutes",
    "full": "resnet34 at 256 px (smp's Oxford-pet recipe): needs a GPU or patience",
}

current = state.settings()
ds = loaders.dataset_or_stop(current)
st.title("Train")
st.caption(
    "Training and evaluation run as separate processes in the background: they keep running when you close or "
    "reload this tab, and every tab shows the same job. One training and one evaluation job at a time."
)


def corrected_counts(current: Settings, ds: Dataset) -> tuple[int, int]:
    """Corrected images in trainval (used with "use corrections") and in test (evaluation only)."""
    if not store.exists(current):
        return 0, 0
    splits = ds.table["split"][ds.table.index.isin(list(latest_versions(current)))]
    return int((splits == "trainval").sum()), int((splits == "test").sum())


form, panel = st.columns([2, 3], gap="large")
with form:
    st.subheader("New run")
    preset = st.selectbox("Preset", list(PRESETS), key="train_preset",
                          format_func=lambda p: f"{p}: {PRESET_HELP.get(p, '')}")
    defaults = PRESETS[preset]
    encoder = st.selectbox("Encoder", ENCODERS, index=ENCODERS.index(defaults["encoder"]),
                           key=f"train_encoder_{preset}")
    size = st.select_slider("Input size (px)", SIZES, value=defaults["image_size"], key=f"train_size_{preset}",
                            help="images are squashed to size × size for the model; predictions are made at the "
                                 "original size")
    epochs = st.number_input("Epochs", min_value=1, max_value=500, value=int(defaults["epochs"]),
                             key=f"train_epochs_{preset}")
    pretrained = st.checkbox("Start from ImageNet encoder weights", value=True, key="train_pretrained",
                             help="downloaded once and cached; without network access or a cached copy training "
                                  "starts from random weights (needs more epochs)")
    processes = st.number_input(
        "Processes / GPUs", min_value=1, max_value=max(1, max_processes()), value=default_processes(),
        key="train_processes",
        help="more than one trains through torchrun with DistributedDataParallel: one process per GPU; on the CPU "
             "the processes share the cores. The batch is split over them, so the recipe (and the result) stays "
             "the same")
    use_corrections = st.checkbox("Use corrections", key="train_use_corrections")
    policy = policy_choice(state.TRAIN_POLICY, disabled=not use_corrections)
    in_trainval, in_test = corrected_counts(current, ds)
    st.caption(
        "With corrections, the latest correction of a trainval image replaces its official trimap for training "
        "and validation. **Corrections of test-split images are used for evaluation only, never for training.** "
        f"Now: {in_trainval} corrected trainval image(s), {in_test} corrected test image(s)."
    )
    st.session_state.setdefault(state.TRAIN_RUN, jobs_view.suggest_run_name(current, preset))
    run = st.text_input("Run name", key=state.TRAIN_RUN, max_chars=64,
                        help="letters, digits, '.', '_' or '-'; becomes the folder runs/<name>").strip()
    problem = jobs_view.run_name_problem(current, run)
    if problem:
        st.error(problem)
    busy = jobs_view.busy_message(current, "train")
    if busy:
        st.info(busy)
    if st.button("Start training", key="train_start", type="primary", disabled=bool(problem or busy)):
        config = TrainConfig(run=run, preset=preset, encoder=encoder, image_size=int(size), epochs=int(epochs),
                             use_corrections=use_corrections, corrections=policy,
                             encoder_weights="imagenet" if pretrained else None)
        if jobs_view.start_job(current, "train", {**config.to_dict(), "processes": int(processes)}):
            del st.session_state[state.TRAIN_RUN]  # the next run gets a fresh suggested name
            st.rerun()

with panel:
    st.subheader("Training job")
    jobs_view.job_panel(current, "train")

st.divider()
st.subheader("Evaluate")
st.caption("Predicts every image of a split with the run's best checkpoint and stores per-image metrics; "
           "images already predicted with the same checkpoint are reused.")
evaluable = [r for r in list_runs(current) if r.has_best]
left, right = st.columns([2, 3], gap="large")
with left:
    if not evaluable:
        st.info("No run has a checkpoint yet: train one above.")
    else:
        names = [r.name for r in evaluable]
        done = {r.name: r.evaluated_splits for r in evaluable}
        chosen = st.selectbox("Run", names, key="evaluate_run",
                              format_func=lambda n: f"{n} (evaluated: {', '.join(done[n]) or 'nothing yet'})")
        split = st.selectbox("Split", EVAL_SPLITS, key="evaluate_split")
        busy_eval = jobs_view.busy_message(current, "evaluate")
        if busy_eval:
            st.info(busy_eval)
        jobs_view.evaluate_button(current, chosen, split, key="evaluate_start", label="Start evaluation")
with right:
    jobs_view.job_panel(current, "evaluate")

st.divider()
st.subheader("Cross-validation (label quality)")
st.caption("Trains one model per fold of trainval with the recipe above and stores, for every trainval image, the "
           "prediction of the model that never saw it. Review → suspected label errors then ranks the masks by how "
           "little that model believes them. K folds cost about K − 1 trainings.")
left, right = st.columns([2, 3], gap="large")
with left:
    folds = st.number_input("Folds", min_value=2, max_value=20, value=4, key="crossval_folds")
    cv_run = st.text_input("Cross-validation name", value=f"cv-{run}" if run else "cv", key="crossval_run",
                           max_chars=56, help="the folds become runs <name>-fold1 … <name>-foldK").strip()
    cv_problem = jobs_view.run_name_problem(current, cv_run)
    if not cv_problem and (current.run_dir(cv_run) / STATE_FILE).exists():
        cv_problem = f"a cross-validation named {escape(cv_run, code=True)} exists: resume it from its job"
    if cv_problem:
        st.error(cv_problem)
    cv_busy = jobs_view.busy_message(current, "crossval")
    if cv_busy:
        st.info(cv_busy)
    if st.button("Start cross-validation", key="crossval_start", disabled=bool(cv_problem or cv_busy)):
        recipe = TrainConfig(run=cv_run, preset=preset, encoder=encoder, image_size=int(size), epochs=int(epochs),
                             use_corrections=use_corrections, encoder_weights="imagenet" if pretrained else None)
        if jobs_view.start_job(current, "crossval", {**recipe.to_dict(), "folds": int(folds)}):
            st.rerun()
with right:
    jobs_view.job_panel(current, "crossval")

with st.expander("Recent jobs"):
    recent = jobs_view.recent_jobs(current)
    if recent.empty:
        st.caption("No jobs yet.")
    else:
        st.dataframe(recent, hide_index=True, width="stretch")
