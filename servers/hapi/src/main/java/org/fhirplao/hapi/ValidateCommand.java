package org.fhirplao.hapi;

import ca.uhn.fhir.context.FhirContext;
import ca.uhn.fhir.context.support.DefaultProfileValidationSupport;
import ca.uhn.fhir.context.support.IValidationSupport;
import ca.uhn.fhir.parser.DataFormatException;
import ca.uhn.fhir.validation.FhirValidator;
import ca.uhn.fhir.validation.ResultSeverityEnum;
import ca.uhn.fhir.validation.SingleValidationMessage;
import ca.uhn.fhir.validation.ValidationResult;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import java.io.BufferedReader;
import java.io.IOException;
import java.io.InputStreamReader;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.DirectoryStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.regex.Pattern;
import org.hl7.fhir.common.hapi.validation.support.CommonCodeSystemsTerminologyService;
import org.hl7.fhir.common.hapi.validation.support.InMemoryTerminologyServerValidationSupport;
import org.hl7.fhir.common.hapi.validation.support.PrePopulatedValidationSupport;
import org.hl7.fhir.common.hapi.validation.support.SnapshotGeneratingValidationSupport;
import org.hl7.fhir.common.hapi.validation.support.UnknownCodeSystemWarningValidationSupport;
import org.hl7.fhir.common.hapi.validation.support.ValidationSupportChain;
import org.hl7.fhir.common.hapi.validation.validator.FhirInstanceValidator;
import org.hl7.fhir.instance.model.api.IBaseResource;
import org.hl7.fhir.r4.model.CodeSystem;
import org.hl7.fhir.r4.model.StructureDefinition;
import org.hl7.fhir.r4.model.ValueSet;

/**
 * HAPI's instance validator (the HL7 validation engine) as a command: fhir-plao's second opinion.
 *
 * <pre>
 *   java -cp ... org.fhirplao.hapi.ValidateCommand --profiles DIR FILE...
 *   java -cp ... org.fhirplao.hapi.ValidateCommand --profiles DIR --ndjson   (one document a line on stdin)
 * </pre>
 *
 * The R4 core definitions come from hapi-fhir-validation-resources-r4; the StructureDefinitions,
 * ValueSets and CodeSystems in DIR are added on top. No terminology server and no network: codes
 * of systems the engine does not carry (LOINC, SNOMED CT, RxNorm, ...) are warnings, not errors.
 *
 * <p>Output: one JSON line per input document, flushed, in input order:
 * {@code {"source": ..., "issues": [{"severity", "path", "message", "rule"}]}}, with
 * {@code path} a FHIRPath location from the document's root (HAPI's {@code /*Type/id*}{@code /}
 * comments removed) and {@code rule} {@code hapi:<message id>}. A document that is not FHIR JSON
 * gives one error issue at path {@code ""}. Exit 0 when every input was read, 2 on bad arguments
 * or an unreadable file or profile.
 */
public final class ValidateCommand {

	private static final Pattern LOCATION_COMMENT = Pattern.compile("/\\*.*?\\*/");
	private static final ObjectMapper JSON = new ObjectMapper();

	private final FhirContext context;
	private final FhirValidator validator;

	private ValidateCommand(Path profiles) throws IOException {
		context = FhirContext.forR4();
		PrePopulatedValidationSupport ours = new PrePopulatedValidationSupport(context);
		int loaded = 0;
		try (DirectoryStream<Path> files = Files.newDirectoryStream(profiles, "*.json")) {
			for (Path file : files) {
				loaded += addConformance(ours, file) ? 1 : 0;
			}
		}
		if (loaded == 0) {
			throw new IOException("no StructureDefinition, ValueSet or CodeSystem in " + profiles);
		}
		UnknownCodeSystemWarningValidationSupport unknownSystems = new UnknownCodeSystemWarningValidationSupport(context);
		unknownSystems.setNonExistentCodeSystemSeverity(IValidationSupport.IssueSeverity.WARNING);
		ValidationSupportChain chain = new ValidationSupportChain(
				new DefaultProfileValidationSupport(context),
				ours,
				new CommonCodeSystemsTerminologyService(context),
				new InMemoryTerminologyServerValidationSupport(context),
				new SnapshotGeneratingValidationSupport(context),
				unknownSystems);
		FhirInstanceValidator module = new FhirInstanceValidator(chain);
		module.setAnyExtensionsAllowed(true);
		validator = context.newValidator();
		validator.setValidateAgainstStandardSchema(false);
		validator.setValidateAgainstStandardSchematron(false);
		validator.registerValidatorModule(module);
	}

	private boolean addConformance(PrePopulatedValidationSupport support, Path file) throws IOException {
		String text = Files.readString(file, StandardCharsets.UTF_8);
		IBaseResource resource;
		try {
			resource = context.newJsonParser().parseResource(text);
		} catch (DataFormatException e) {
			throw new IOException(file + ": not FHIR JSON: " + e.getMessage(), e);
		}
		if (resource instanceof StructureDefinition sd) {
			support.addStructureDefinition(sd);
		} else if (resource instanceof ValueSet vs) {
			support.addValueSet(vs);
		} else if (resource instanceof CodeSystem cs) {
			support.addCodeSystem(cs);
		} else {
			return false;
		}
		return true;
	}

	private ObjectNode validate(String source, String text) {
		ObjectNode result = JSON.createObjectNode();
		result.put("source", source);
		ArrayNode issues = result.putArray("issues");
		ValidationResult outcome;
		try {
			outcome = validator.validateWithResult(text);
		} catch (RuntimeException e) {
			addIssue(issues, "error", "", "not FHIR JSON: " + e.getMessage(), "hapi:parse");
			return result;
		}
		for (SingleValidationMessage message : outcome.getMessages()) {
			String location = message.getLocationString() == null ? "" : message.getLocationString();
			String path = LOCATION_COMMENT.matcher(location).replaceAll("");
			String id = message.getMessageId() == null ? "" : message.getMessageId();
			addIssue(issues, severity(message.getSeverity()), path, message.getMessage(), "hapi:" + id);
		}
		return result;
	}

	private static String severity(ResultSeverityEnum severity) {
		return switch (severity) {
			case FATAL, ERROR -> "error";
			case WARNING -> "warning";
			case INFORMATION -> "information";
		};
	}

	private static void addIssue(ArrayNode issues, String severity, String path, String message, String rule) {
		ObjectNode issue = issues.addObject();
		issue.put("severity", severity);
		issue.put("path", path);
		issue.put("message", message == null ? "" : message);
		issue.put("rule", rule);
	}

	private static void emit(PrintStream out, ObjectNode result) throws IOException {
		out.println(JSON.writeValueAsString(result));
		out.flush();
	}

	public static void main(String[] args) throws IOException {
		Path profiles = null;
		boolean ndjson = false;
		List<String> files = new ArrayList<>();
		for (int i = 0; i < args.length; i++) {
			switch (args[i]) {
				case "--profiles" -> {
					if (i + 1 >= args.length) {
						usage("--profiles needs a directory");
					}
					profiles = Path.of(args[++i]);
				}
				case "--ndjson" -> ndjson = true;
				default -> files.add(args[i]);
			}
		}
		if (profiles == null || !Files.isDirectory(profiles)) {
			usage("--profiles DIR is required and must be a directory");
		}
		if (ndjson == !files.isEmpty()) {
			usage("give either --ndjson (documents on standard input) or one or more files");
		}
		ValidateCommand command;
		try {
			command = new ValidateCommand(profiles);
		} catch (IOException e) {
			System.err.println("validate: cannot load profiles: " + e.getMessage());
			System.exit(2);
			return;
		}
		PrintStream out = new PrintStream(System.out, false, StandardCharsets.UTF_8);
		if (ndjson) {
			BufferedReader in = new BufferedReader(new InputStreamReader(System.in, StandardCharsets.UTF_8));
			String line;
			int number = 0;
			while ((line = in.readLine()) != null) {
				number++;
				if (!line.isBlank()) {
					emit(out, command.validate("line " + number, line));
				}
			}
			return;
		}
		for (String file : files) {
			String text;
			try {
				text = Files.readString(Path.of(file), StandardCharsets.UTF_8);
			} catch (IOException e) {
				System.err.println("validate: cannot read " + file + ": " + e.getMessage());
				System.exit(2);
				return;
			}
			emit(out, command.validate(file, text));
		}
	}

	private static void usage(String problem) {
		System.err.println("validate: " + problem);
		System.err.println("usage: ValidateCommand --profiles DIR (FILE... | --ndjson)");
		System.exit(2);
	}
}
