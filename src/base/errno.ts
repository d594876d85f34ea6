// SPDX-License-Identifier: GPL-2.0-only
// The kernel's error numbers that the TDP MMU returns, negated as in the kernel.
export const EBUSY = -16;
export const ENOMEM = -12;
export const EFAULT = -14;
export const EINVAL = -22;
export const EAGAIN = -11;
export const EPERM = -1;
export const EEXIST = -17;
