"""The `earmark` commands that run in this process (train, evaluate): each module holds its
command's parser, builds the arguments of `earmark.model`, calls it and prints what the
command prints. prepare and label are Beam pipelines (`earmark.pipelines`), report and demo
live in `earmark.report` and `earmark.demo`."""
