// SPDX-License-Identifier: GPL-2.0-only
export * from "./step.js";
export { drive, FALSE_NOW, SelfDeadlock, STEPPED } from "./drive.js";
