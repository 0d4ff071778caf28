// Code systems and core definitions referred to by canonical URL.
Alias: $loinc = http://loinc.org
Alias: $sct = http://snomed.info/sct
Alias: $ucum = http://unitsofmeasure.org
Alias: $rxnorm = http://www.nlm.nih.gov/research/umls/rxnorm
Alias: $obs-category = http://terminology.hl7.org/CodeSystem/observation-category
Alias: $vitalsigns = http://hl7.org/fhir/StructureDefinition/vitalsigns
