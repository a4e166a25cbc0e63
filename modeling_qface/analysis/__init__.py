"""Analysing many inputs with a Q-Face model: `qface analyze` (`analyze`), the input listing (`inputs`) and the
worker processes that read, detect and align images (`workers`). Video and dataset inputs belong here too."""
