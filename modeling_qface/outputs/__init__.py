"""Result files: the JSONL and CSV writers of `qface analyze` (`writers`) and the one-row-per-face table with py-feat /
OpenFace column names (`dataframe`). Every tool that writes results writes them through here."""
