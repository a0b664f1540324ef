"""How people start and reach a job: the command line, the Python API, serving, attach/stop, the batch tools' command line. The only layer that parses arguments."""
