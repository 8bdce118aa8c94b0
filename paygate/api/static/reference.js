// The API reference page of paygate serve: Swagger UI over the gateway's own /openapi.json.
// Everything it loads comes from this server (utility networks are offline): no validator
// badge, no fonts or scripts from elsewhere.
window.addEventListener("load", function () {
  window.ui = SwaggerUIBundle({
    url: "/openapi.json",
    dom_id: "#reference",
    deepLinking: true,
    validatorUrl: null,
    presets: [SwaggerUIBundle.presets.apis],
    layout: "BaseLayout",
    defaultModelsExpandDepth: 0,
    displayRequestDuration: true,
    persistAuthorization: false,
  });
});
