"""rtsr's shipped weights (NAME.pt) and model cards (NAME.yaml), installed as the package data of
`rtsr.weights` (setup.py maps this folder onto that package; rtsr.locations finds it).
`python -m train.train CONFIG --ship` writes here. Built TensorRT plans never live here: they go
to the user's cache folder (rtsr info shows where)."""
