/** The sync conformance suite (tests/conformance/sync.ts) over every primitive. */
import { SYNC_PRIMITIVES, syncConformance } from "./conformance/sync.ts";

for (const [index, subject] of SYNC_PRIMITIVES.entries()) syncConformance(subject, index);
