#include "ferry.h"
int cmd_convert (int argc, char **argv) { print_message ("convert", "not yet"); return 1; }
