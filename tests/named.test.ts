/**
 * The named-object conformance suite (`tests/conformance/named.ts`) over every named kind
 * (`tests/conformance/named_fixtures.ts`): segments, POSIX and System V queues, named semaphores, FIFO pairs, Unix
 * stream and datagram socket files, lock files and file queues.
 */
import { namedConformance, namedTearDown } from "./conformance/named.ts";
import { NAMED_FIXTURES } from "./conformance/named_fixtures.ts";

for (const fixture of NAMED_FIXTURES) namedConformance(fixture);
namedTearDown();
