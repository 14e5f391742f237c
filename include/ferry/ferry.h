/* ferry: the whole public interface in one include. */
#ifndef FERRY_H
#define FERRY_H

#include <ferry/error.h>
#include <ferry/image.h>
#include <ferry/copy.h>
#include <ferry/target.h>
#include <ferry/vmdk.h>

#endif /* FERRY_H */
