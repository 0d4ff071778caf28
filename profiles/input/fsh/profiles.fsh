// The fhir-plao profiles (FHIR R4 4.0.1). Canonical base: http://fhir-plao.example.org/fhir
// Build: python scripts/profiles/build.py (see profiles/README.md).

// --------------------------------------------------------------------------- Patient

Profile: PlaoPatient
Parent: Patient
Id: plao-patient
Title: "PLAO Patient"
Description: "A patient of a pregnancy- and lactation-associated osteoporosis case: identified by a (synthetic, in examples) identifier, with administrative gender."
* ^experimental = false
* identifier 1..* MS
* identifier.system 1..1 MS
* identifier.value 1..1 MS
* gender 1..1 MS
* birthDate MS

// --------------------------------------------------------------------------- Observations

Profile: PlaoVitalSigns
Parent: $vitalsigns
Id: plao-vital-signs
Title: "PLAO Vital Signs"
Description: "A vital sign (body height, body weight, body mass index) following the FHIR R4 vital-signs profile, with a UCUM valueQuantity."
* ^experimental = false
* value[x] only Quantity
* value[x] MS
* valueQuantity.value 1..1 MS
* valueQuantity.unit 1..1 MS
* valueQuantity.system 1..1 MS
* valueQuantity.system = $ucum
* valueQuantity.code 1..1 MS

Invariant: plao-lab-1
Description: "A coded test has a LOINC coding; a test without a verified LOINC code is given as text only."
Expression: "coding.exists() implies coding.where(system = 'http://loinc.org' and code.exists()).exists()"
Severity: #error

Invariant: plao-lab-2
Description: "The test is named by a coding or a text."
Expression: "coding.exists() or text.exists()"
Severity: #error

Profile: PlaoLabResult
Parent: Observation
Id: plao-lab-result
Title: "PLAO Laboratory Result"
Description: "A laboratory result: category laboratory, a LOINC code (text only for a test without a verified LOINC code), a UCUM valueQuantity when a value is measured, reference range and interpretation (H, L, N) when known."
* ^experimental = false
* status MS
* category 1..* MS
* category ^slicing.discriminator.type = #pattern
* category ^slicing.discriminator.path = "$this"
* category ^slicing.rules = #open
* category ^slicing.description = "The laboratory category, among any others"
* category contains laboratory 1..1 MS
* category[laboratory] = $obs-category#laboratory
* code MS
* code obeys plao-lab-1 and plao-lab-2
* subject 1..1 MS
* subject only Reference(Patient)
* effective[x] 1..1 MS
* value[x] MS
* valueQuantity.value 1..1 MS
* valueQuantity.unit 1..1 MS
* valueQuantity.system 1..1 MS
* valueQuantity.system = $ucum
* valueQuantity.code 1..1 MS
* interpretation MS
* referenceRange MS

// The DXA unit invariants plao-dxa-1 (BMD), plao-dxa-2 (T-score) and plao-dxa-3 (Z-score) are
// generated from the code table into from-code-table.fsh, with the value sets.

Profile: PlaoDxaScore
Parent: Observation
Id: plao-dxa-score
Title: "PLAO DXA Score"
Description: "One DXA bone density result at one site and visit: a T-score, a Z-score or a bone mineral density, category imaging, with its value (in the unit its kind of score takes), date and measurement site (coded from plao-dxa-sites when the site has a verified code)."
* ^experimental = false
* obeys plao-dxa-1 and plao-dxa-2 and plao-dxa-3
* status MS
* category 1..* MS
* category ^slicing.discriminator.type = #pattern
* category ^slicing.discriminator.path = "$this"
* category ^slicing.rules = #open
* category ^slicing.description = "The imaging category, among any others"
* category contains imaging 1..1 MS
* category[imaging] = $obs-category#imaging
* code MS
* code from PlaoDxaScoreCodes (required)
* subject 1..1 MS
* subject only Reference(Patient)
* effective[x] 1..1 MS
* effective[x] only dateTime
* value[x] 1..1 MS
* value[x] only Quantity
* valueQuantity.value 1..1 MS
* valueQuantity.system 1..1 MS
* valueQuantity.system = $ucum
* valueQuantity.code 1..1 MS
* bodySite 1..1 MS
* bodySite from PlaoDxaSites (extensible)

// --------------------------------------------------------------------------- DiagnosticReport

Profile: PlaoDxaReport
Parent: DiagnosticReport
Id: plao-dxa-report
Title: "PLAO DXA Report"
Description: "The report of one DXA visit (LOINC 83311-1), grouping its DXA scores."
* ^experimental = false
* status MS
* code MS
* code = $loinc#83311-1
* subject 1..1 MS
* subject only Reference(Patient)
* effective[x] 1..1 MS
* result 1..* MS
* result only Reference(PlaoDxaScore)
* conclusion MS

// --------------------------------------------------------------------------- Conditions

Profile: PlaoVertebralFracture
Parent: Condition
Id: plao-vertebral-fracture
Title: "PLAO Vertebral Fracture"
Description: "A fracture of one vertebra: its body site (the vertebra), onset, clinical status (active, later resolved when healed) and the imaging report that shows it."
* ^experimental = false
* clinicalStatus 1..1 MS
* verificationStatus MS
* code 1..1 MS
* bodySite 1..1 MS
* bodySite from PlaoVertebrae (required)
* subject MS
* subject only Reference(Patient)
* onset[x] 1..1 MS
* abatement[x] MS
* evidence 1..* MS
* evidence.detail 1..* MS
* evidence.detail only Reference(DiagnosticReport)

Profile: PlaoDiagnosis
Parent: Condition
Id: plao-diagnosis
Title: "PLAO Diagnosis"
Description: "A diagnosis of the case (PLAO, vitamin D insufficiency, low back pain, ...), or a secondary cause of osteoporosis that was looked for and excluded (verificationStatus refuted)."
* ^experimental = false
* clinicalStatus MS
* verificationStatus 1..1 MS
* code 1..1 MS
* subject MS
* subject only Reference(Patient)

// --------------------------------------------------------------------------- MedicationStatement

Invariant: plao-med-1
Description: "A coded medication has an RxNorm coding; a drug without an RxNorm concept (an unspecified NSAID, a calcium supplement of unknown salt) is given as text, with at most its ATC class code."
Expression: "coding.where(system = 'http://www.nlm.nih.gov/research/umls/rxnorm' and code.exists()).exists() or coding.all(system = 'http://www.whocc.no/atc')"
Severity: #error

Invariant: plao-med-2
Description: "The medication has a coding or a text."
Expression: "coding.exists() or text.exists()"
Severity: #error

Profile: PlaoMedicationStatement
Parent: MedicationStatement
Id: plao-medication-statement
Title: "PLAO Medication Statement"
Description: "A medication taken: an RxNorm-coded medication (or, for a drug without an RxNorm concept, its text and at most an ATC class code), with dosage, timing and a UCUM dose quantity."
* ^experimental = false
* status MS
* medication[x] only CodeableConcept
* medication[x] MS
* medicationCodeableConcept obeys plao-med-1 and plao-med-2
* subject MS
* subject only Reference(Patient)
* effective[x] MS
* dosage 1..* MS
* dosage.timing 1..1 MS
* dosage.route MS
* dosage.doseAndRate 1..* MS
* dosage.doseAndRate.dose[x] 1..1 MS
* dosage.doseAndRate.dose[x] only SimpleQuantity
* dosage.doseAndRate.doseQuantity.value 1..1 MS
* dosage.doseAndRate.doseQuantity.system 1..1 MS
* dosage.doseAndRate.doseQuantity.system = $ucum
* dosage.doseAndRate.doseQuantity.code 1..1 MS
