"""file_search in runs: the function the model is offered, the step shape and the citations."""
