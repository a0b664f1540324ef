"""One host as a Ray node sees it: where the nodes go, what each offers (CPUs, GPUs, memory), its network and its temp dirs."""
