"""PetSeg core: dataset, model, training, evaluation, corrections and export.

Nothing in this package imports Streamlit; the dashboard is a view over it.

    >>> from core.config import Settings
    >>> settings = Settings.resolve(data="data/oxford-iiit-pet", workspace="workspace")
"""
