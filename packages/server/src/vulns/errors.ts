import { type ErrorEntry, errorClass } from '@flotilla/protocol';

/** Errors of vulnerability data: imports name the file and the field that is wrong. */
export const VULNS_ERRORS = {
  FLOTILLA_ERR_VULNS_IMPORT_INVALID: {
    status: 400,
    message: 'vulnerability import is not valid OSV data',
    hint: 'fix or remove the file and field named in the message (OSV schema: https://ossf.github.io/osv-schema/); nothing was imported',
  },
  FLOTILLA_ERR_VULNS_IMPORT_TOO_LARGE: {
    status: 413,
    message: 'vulnerability import exceeds a size or count limit',
    hint: 'split the import, or raise limits.maxOsvImportBytes / maxOsvRecordBytes / maxOsvInflatedBytes / maxOsvRecords; nothing was imported',
  },
  FLOTILLA_ERR_VULNS_UNKNOWN_ECOSYSTEM: {
    status: 422,
    message: 'OSV record names an ecosystem Flotilla cannot match',
    hint: 'import only Debian, Ubuntu and npm records, or pass --skip-unknown-ecosystems to record such entries as skipped; nothing was imported',
  },
  FLOTILLA_ERR_VULNS_SBOM_UNREADABLE: {
    status: 422,
    message: "the release's SBOM cannot be read for matching",
    hint: 'check that the SBOM artifact exists and is CycloneDX JSON',
  },
} as const satisfies Record<string, ErrorEntry>;

export class VulnsError extends errorClass(VULNS_ERRORS, 'vulns', 'VulnsError') {}
